"""A real MLflow tracking server: database backend, proxied artifact store, 127.0.0.1 unless told otherwise.

``mlflow server --serve-artifacts`` hands clients ``mlflow-artifacts:/`` locations and stores the
files under ``--artifacts-destination`` itself, so the processes that log (Ray job drivers) need
only the server's URL, never the artifact store's credentials or a shared disk.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from maetune.cluster.local import port_in_use

DEFAULT_BACKEND = "sqlite:///mlflow.db"
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 5000


@dataclass(frozen=True)
class MlflowServer:
    """A server started in the background (its own process group)."""

    proc: subprocess.Popen
    url: str
    log: Path | None


def _mlflow_executable() -> str:
    beside = Path(sys.executable).with_name("mlflow")
    return str(beside) if beside.exists() else "mlflow"


def server_url(host: str, port: int) -> str:
    """The URL clients use (``0.0.0.0`` / ``::`` binds are reached through loopback here)."""
    shown = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
    return f"http://{shown}:{port}"


def server_command(
    backend_store_uri: str = DEFAULT_BACKEND,
    artifacts_destination: str | None = None,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    workers: int = 1,
    extra: Sequence[str] = (),
) -> list[str]:
    """The ``mlflow server`` command line.

    Args:
        backend_store_uri: Any SQLAlchemy URL (``sqlite:///mlflow.db``, ``postgresql://...``).
        artifacts_destination: Where the server stores artifacts (a folder, ``s3://...``); a local
            folder is made absolute. Default: MLflow's ``./mlartifacts``.
        host: Interface to bind.
        port: Port to listen on.
        workers: Server worker processes.
        extra: More ``mlflow server`` options (``--app-name basic-auth``, ``--allowed-hosts ...``).
    """
    cmd = [_mlflow_executable(), "server", "--backend-store-uri", backend_store_uri, "--serve-artifacts"]
    if artifacts_destination:
        dest = artifacts_destination
        if "://" not in dest:
            dest = str(Path(dest).expanduser().resolve())
        cmd += ["--artifacts-destination", dest]
    cmd += ["--host", host, "--port", str(port), "--workers", str(workers), *extra]
    return cmd


def is_healthy(url: str) -> bool:
    """Whether ``url/health`` answers OK."""
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=3) as resp:
            return resp.status == 200
    except (urllib.error.URLError, OSError):
        return False


def _wait_healthy(proc: subprocess.Popen, url: str, timeout: float, log: Path | None) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            tail = ""
            if log and log.exists():
                lines = [x for x in log.read_text(errors="replace").splitlines() if x.strip()]
                tail = f": {lines[-1]}" if lines else ""
            raise RuntimeError(f"mlflow server exited with code {proc.returncode}{tail}")
        if is_healthy(url):
            return
        time.sleep(0.5)
    raise RuntimeError(f"mlflow server did not answer at {url} within {timeout:.0f} s")


def start_server(
    backend_store_uri: str = DEFAULT_BACKEND,
    artifacts_destination: str | None = None,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    workers: int = 1,
    extra: Sequence[str] = (),
    log: Path | None = None,
    timeout: float = 120,
) -> MlflowServer:
    """Start ``mlflow server`` in the background and wait until it is healthy.

    Raises:
        RuntimeError: The port is taken, or the server exits or does not answer in time.
    """
    if port_in_use(port, "127.0.0.1" if host in ("0.0.0.0", "::") else host):
        raise RuntimeError(f"port {port} is in use")
    out = open(log, "w") if log else subprocess.DEVNULL  # noqa: SIM115 (the child keeps writing to it)
    try:
        proc = subprocess.Popen(
            server_command(backend_store_uri, artifacts_destination, host, port, workers, extra),
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # its own process group: stop_server ends it and its workers
        )
    finally:
        if log:
            out.close()
    server = MlflowServer(proc, server_url(host, port), log)
    try:
        _wait_healthy(proc, server.url, timeout, log)
    except BaseException:
        stop_server(server)
        raise
    return server


def stop_server(server: MlflowServer, timeout: float = 20) -> None:
    """Terminate the server's process group (SIGTERM, then SIGKILL after ``timeout``)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(server.proc.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        server.proc.wait(timeout)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(server.proc.pid, signal.SIGKILL)  # workers that outlived their parent
    with contextlib.suppress(subprocess.TimeoutExpired):
        server.proc.wait(5)


def run_server(
    backend_store_uri: str = DEFAULT_BACKEND,
    artifacts_destination: str | None = None,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    workers: int = 1,
    extra: Sequence[str] = (),
) -> int:
    """Run the server in the foreground until it exits or Ctrl-C; prints the URL once it answers."""
    if port_in_use(port, "127.0.0.1" if host in ("0.0.0.0", "::") else host):
        raise RuntimeError(f"port {port} is in use")
    proc = subprocess.Popen(
        server_command(backend_store_uri, artifacts_destination, host, port, workers, extra),
        start_new_session=True,
    )
    server = MlflowServer(proc, server_url(host, port), None)
    try:
        _wait_healthy(proc, server.url, 120, None)
        print(f"MLflow UI and tracking server at {server.url} (backend {backend_store_uri})", flush=True)
        print(f"export MLFLOW_TRACKING_URI={server.url}", flush=True)
        print("Ctrl-C stops it.", flush=True)
        return proc.wait()
    except KeyboardInterrupt:
        return 0
    finally:
        stop_server(server)
