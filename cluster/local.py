"""A local Ray head (GCS, dashboard, job server) on 127.0.0.1 with token authentication.

The head runs as ``ray start --head --block`` in its own session: that process owns every Ray process
of the head and stops them all when it gets SIGTERM. Its pid and addresses go into a state file
inside the head's own ``--temp-dir``, so ``stop`` ends exactly the head it started, never another
Ray cluster on the machine (``ray stop`` would end them all), and plain ``ray.init()`` elsewhere on
the machine does not attach to it (Ray records the latest cluster per temp dir).
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

from maetune.cluster import auth

HOST = "127.0.0.1"
DEFAULT_PORT = 6379
DEFAULT_DASHBOARD_PORT = 8265
DEFAULT_TEMP_DIR = "/tmp/maetune-ray"  # short: Ray's unix socket paths live under it
STATE_FILE = "maetune-head.json"
LOG_FILE = "maetune-head.log"


@dataclass(frozen=True)
class HeadState:
    """What ``start`` recorded about the head it started."""

    pid: int
    temp_dir: str
    gcs_address: str
    dashboard_url: str
    token_source: str
    log: str
    started: float


def _ray_executable() -> str:
    beside = Path(sys.executable).with_name("ray")
    return str(beside) if beside.exists() else "ray"


def port_in_use(port: int, host: str = HOST) -> bool:
    """Whether something already listens on ``host:port``."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0


def free_port() -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def _state_path(temp_dir: str | os.PathLike) -> Path:
    return Path(temp_dir).expanduser().resolve() / STATE_FILE


def read_state(temp_dir: str | os.PathLike = DEFAULT_TEMP_DIR) -> HeadState | None:
    """The recorded head of ``temp_dir``, or None."""
    path = _state_path(temp_dir)
    if not path.is_file():
        return None
    return HeadState(**json.loads(path.read_text()))


def is_alive(state: HeadState) -> bool:
    """Whether the recorded ``ray start --block`` process still runs (and is that process)."""
    try:  # Linux /proc: the standard library has no portable way to read another process's command line
        cmd = Path(f"/proc/{state.pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return False
    return "start" in cmd and "--head" in cmd and any(state.temp_dir in c for c in cmd)


def head_command(
    port: int, dashboard_port: int, temp_dir: str, num_cpus: int | None = None, num_gpus: int | None = None
) -> list[str]:
    """The ``ray start --head --block`` command line, every listener on 127.0.0.1 or a free port."""
    cmd = [
        _ray_executable(),
        "start",
        "--head",
        "--block",
        f"--node-ip-address={HOST}",
        f"--port={port}",
        "--include-dashboard=True",
        f"--dashboard-host={HOST}",
        f"--dashboard-port={dashboard_port}",
        # Ray's fixed defaults (52365, 10001) collide with any other Ray node on this machine
        f"--dashboard-agent-listen-port={free_port()}",
        f"--ray-client-server-port={free_port()}",
        f"--temp-dir={temp_dir}",
        "--disable-usage-stats",
    ]
    if num_cpus is not None:
        cmd.append(f"--num-cpus={num_cpus}")
    if num_gpus is not None:
        cmd.append(f"--num-gpus={num_gpus}")
    return cmd


def job_server_ready(dashboard_url: str, token: str) -> bool:
    """Whether the job server answers an authenticated request."""
    req = urllib.request.Request(f"{dashboard_url}/api/jobs/", headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.status == 200
    except (urllib.error.URLError, OSError):
        return False


def _log_tail(path: str, lines: int = 1) -> str:
    try:
        text = [x for x in Path(path).read_text(errors="replace").splitlines() if x.strip()]
    except OSError:
        return "no log"
    return " | ".join(text[-lines:]) if text else "no output"


def start_head(
    port: int = DEFAULT_PORT,
    dashboard_port: int = DEFAULT_DASHBOARD_PORT,
    temp_dir: str | os.PathLike = DEFAULT_TEMP_DIR,
    num_cpus: int | None = None,
    num_gpus: int | None = None,
    timeout: float = 180,
    env: Mapping[str, str] | None = None,
) -> HeadState:
    """Start a Ray head on 127.0.0.1 with token auth and wait until its job server answers.

    Args:
        port: GCS port (the ``--address`` of ``ray.init`` / ``maetune search``).
        dashboard_port: Dashboard and job-server port (the ``--address`` of ``ray job submit``).
        temp_dir: Ray's temp dir for this head; also holds the state file and the head's log.
        num_cpus: CPUs the head offers (default: all).
        num_gpus: GPUs the head offers (default: all detected).
        timeout: Seconds to wait for the job server.
        env: Environment of the head and where its token is looked up (default: ``os.environ``).

    Raises:
        RuntimeError: A head already runs in ``temp_dir``, a port is taken, or Ray did not come up.
    """
    temp = Path(temp_dir).expanduser().resolve()
    old = read_state(temp)
    if old is not None and is_alive(old):
        raise RuntimeError(
            f"Ray head already running at {old.dashboard_url} (pid {old.pid}, temp dir {temp})"
        )
    for p in (port, dashboard_port):
        if port_in_use(p):
            raise RuntimeError(f"port {p} is in use")
    temp.mkdir(parents=True, exist_ok=True)
    source = auth.ensure_token(env)
    token = auth.read_token(env)
    log = temp / LOG_FILE
    gcs_address, dashboard_url = f"{HOST}:{port}", f"http://{HOST}:{dashboard_port}"
    # Every Ray process of this head (and so every worker) gets its addresses: code that looks the
    # cluster up by itself (Ray Train's PlacementGroupCleaner queries the state API) otherwise fails
    # with "Found multiple active Ray instances" when another Ray runs on the machine, and the
    # placement groups of stopped trials leak until the search deadlocks.
    head_env = {**auth.client_env(env), "RAY_ADDRESS": gcs_address, "RAY_API_SERVER_ADDRESS": dashboard_url}
    with open(log, "w") as out:
        proc = subprocess.Popen(
            head_command(port, dashboard_port, str(temp), num_cpus, num_gpus),
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=head_env,
            start_new_session=True,
        )
    state = HeadState(
        pid=proc.pid,
        temp_dir=str(temp),
        gcs_address=gcs_address,
        dashboard_url=dashboard_url,
        token_source=source,
        log=str(log),
        started=time.time(),
    )
    _state_path(temp).write_text(json.dumps(asdict(state), indent=2))
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            _state_path(temp).unlink(missing_ok=True)
            raise RuntimeError(
                f"ray start exited with code {proc.returncode}: {_log_tail(str(log))} (log {log})"
            )
        if job_server_ready(state.dashboard_url, token):
            return state
        time.sleep(1)
    stop_head(temp)
    raise RuntimeError(f"Ray head did not answer at {state.dashboard_url} within {timeout:.0f} s (log {log})")


def _running(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, exited but not yet reaped by its parent, does not)."""
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)  # reap it when this process is its parent (tests)
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


def _wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if not _running(pid):
            return True
        time.sleep(0.2)
    return False


def stop_head(temp_dir: str | os.PathLike = DEFAULT_TEMP_DIR, timeout: float = 60) -> HeadState | None:
    """Stop the head recorded in ``temp_dir`` (and only it); returns its state, or None if none ran.

    SIGTERM lets ``ray start --block`` stop its GCS, raylet, dashboard and workers; whatever is
    left of its process group after ``timeout`` gets SIGKILL.
    """
    state = read_state(temp_dir)
    if state is None:
        return None
    if is_alive(state):  # only a process that still is our `ray start`: pids get reused
        os.kill(state.pid, signal.SIGTERM)
        _wait_gone(state.pid, timeout)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(state.pid, signal.SIGKILL)  # what is left of its group (start_new_session: pgid = pid)
        _wait_gone(state.pid, 10)
    _state_path(temp_dir).unlink(missing_ok=True)
    return state


def submit_command(state: HeadState, tracking_uri: str = "http://127.0.0.1:5000") -> str:
    """The plain ``ray job submit`` line for this head (a smoke search)."""
    runtime_env = json.dumps({"env_vars": {"MLFLOW_TRACKING_URI": tracking_uri}})
    return " ".join(
        [
            "RAY_AUTH_MODE=token",
            *([f"RAY_AUTH_TOKEN_PATH={shlex.quote(state.token_source)}"] if _custom_token(state) else []),
            "ray job submit",
            f"--address {state.dashboard_url}",
            "--working-dir .",
            f"--runtime-env-json {shlex.quote(runtime_env)}",
            "-- maetune search --config configs/smoke.yaml --set train.storage_path=$PWD/maetune-results",
        ]
    )


def _custom_token(state: HeadState) -> bool:
    return state.token_source not in (auth.TOKEN, str(auth.default_token_path()))
