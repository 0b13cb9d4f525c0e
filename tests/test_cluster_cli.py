"""`maetune cluster|ui|submit` without real servers: tokens, one-line errors, the exact submit command,
and that `cluster stop` ends the process it recorded and nothing else."""

from __future__ import annotations

import json
import os
import re
import shlex
import socket
import stat
import subprocess
import sys
import time

import pytest
from conftest import run_cli

from maetune.cluster import auth, local, mlflow_server


def _one_line_error(proc, fragment: str) -> None:
    assert proc.returncode != 0
    lines = [ln for ln in proc.stderr.strip().splitlines() if ln.startswith("maetune: error:")]
    assert len(lines) == 1 and fragment in lines[0], proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr


def test_token_is_created_where_ray_looks(tmp_path) -> None:
    path = tmp_path / "sub" / "token"
    env = {auth.TOKEN_PATH: str(path)}
    assert auth.ensure_token(env) == str(path)
    token = path.read_text()
    assert re.fullmatch(r"[0-9a-f]{64}", token)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert auth.ensure_token(env) == str(path) and path.read_text() == token  # kept, not replaced
    assert auth.read_token(env) == token
    both = {auth.TOKEN: "abc", auth.TOKEN_PATH: str(path)}
    assert auth.token_source(both) == auth.TOKEN and auth.read_token(both) == "abc"  # Ray's precedence
    assert auth.client_env(env)[auth.AUTH_MODE] == "token"


def test_submit_prints_the_plain_ray_job_submit(tmp_path) -> None:
    proc = run_cli(
        [
            "submit",
            "--dry-run",
            "--address",
            "http://127.0.0.1:8265",
            "--tracking-uri",
            "http://127.0.0.1:5000",
            "--temp-dir",
            str(tmp_path),
            "--",
            "search",
            "--config",
            "configs/smoke.yaml",
            "--set",
            "train.storage_path=/data/results",
        ],
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    line = proc.stdout.strip()
    assert line.startswith("RAY_AUTH_MODE=token ")
    assert shlex.split(line.removeprefix("RAY_AUTH_MODE=token ")) == [
        "ray", "job", "submit", "--address", "http://127.0.0.1:8265", "--working-dir", ".",
        "--runtime-env-json", json.dumps({"env_vars": {"MLFLOW_TRACKING_URI": "http://127.0.0.1:5000"}}),
        "--", "maetune", "search", "--config", "configs/smoke.yaml",
        "--set", "train.storage_path=/data/results",
    ]  # fmt: skip
    assert "storage_path" not in proc.stderr  # no warning when the storage path is given


def test_submit_refuses_what_would_lose_results(tmp_path) -> None:
    base = ["submit", "--dry-run", "--address", "http://127.0.0.1:8265", "--temp-dir", str(tmp_path)]
    proc = run_cli([*base, "--", "search"], cwd=tmp_path, env={"MLFLOW_TRACKING_URI": "sqlite:///mlflow.db"})
    _one_line_error(proc, "is not a tracking server URL")
    proc = run_cli(
        [
            "submit",
            "--dry-run",
            "--temp-dir",
            str(tmp_path),
            "--tracking-uri",
            "http://h:5000",
            "--",
            "search",
        ],
        cwd=tmp_path,
        env={"RAY_API_SERVER_ADDRESS": ""},
    )
    _one_line_error(proc, "no Ray job server")
    proc = run_cli([*base, "--tracking-uri", "http://h:5000", "--", "search"], cwd=tmp_path)
    assert proc.returncode == 0 and "train.storage_path" in proc.stderr  # a warning, not an error


def test_cluster_status_and_stop_without_a_head(tmp_path) -> None:
    proc = run_cli(["cluster", "status", "--temp-dir", str(tmp_path)], cwd=tmp_path)
    assert proc.returncode == 1 and "no Ray head running" in proc.stdout
    proc = run_cli(["cluster", "stop", "--temp-dir", str(tmp_path)], cwd=tmp_path)
    assert proc.returncode == 0 and "no Ray head recorded" in proc.stdout


@pytest.fixture
def listening_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        yield s.getsockname()[1]


def test_ports_in_use_are_one_line_errors(tmp_path, listening_port) -> None:
    proc = run_cli(
        ["cluster", "start", "--temp-dir", str(tmp_path), "--port", str(listening_port)], cwd=tmp_path
    )
    _one_line_error(proc, f"port {listening_port} is in use")
    assert not (tmp_path / local.STATE_FILE).exists()
    proc = run_cli(["ui", "--port", str(listening_port)], cwd=tmp_path)
    _one_line_error(proc, f"port {listening_port} is in use")


def test_stop_ends_the_recorded_head_only(tmp_path) -> None:
    """A stand-in process with a head's command line: `start` refuses a second head, `stop` ends it."""
    temp = str(tmp_path)
    fake = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(120)", "start", "--head", f"--temp-dir={temp}"],
        start_new_session=True,
    )
    bystander = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(120)"], start_new_session=True
    )
    try:
        state = local.HeadState(fake.pid, temp, "127.0.0.1:1", "http://127.0.0.1:2", "x", "log", time.time())
        (tmp_path / local.STATE_FILE).write_text(json.dumps(state.__dict__))
        assert local.is_alive(state)
        proc = run_cli(["cluster", "start", "--temp-dir", temp], cwd=tmp_path)
        _one_line_error(proc, "Ray head already running at http://127.0.0.1:2")
        proc = run_cli(["cluster", "stop", "--temp-dir", temp], cwd=tmp_path)
        assert proc.returncode == 0 and "stopped the Ray head" in proc.stdout
        assert fake.wait(10) is not None
        assert bystander.poll() is None
        assert not (tmp_path / local.STATE_FILE).exists()
    finally:
        for p in (fake, bystander):
            if p.poll() is None:
                os.killpg(p.pid, 9)
                p.wait()


def test_mlflow_server_command() -> None:
    cmd = mlflow_server.server_command("postgresql://u@db/mlflow", "arts", extra=["--app-name", "basic-auth"])
    assert cmd[1:4] == ["server", "--backend-store-uri", "postgresql://u@db/mlflow"]
    assert "--serve-artifacts" in cmd
    dest = cmd[cmd.index("--artifacts-destination") + 1]
    assert os.path.isabs(dest) and dest.endswith("arts")
    assert cmd[cmd.index("--host") + 1] == "127.0.0.1" and cmd[cmd.index("--port") + 1] == "5000"
    assert cmd[-2:] == ["--app-name", "basic-auth"]
    assert mlflow_server.server_command(artifacts_destination="s3://b/p")[6] == "s3://b/p"
    assert mlflow_server.server_url("0.0.0.0", 5000) == "http://127.0.0.1:5000"


def test_head_command_binds_loopback_and_avoids_fixed_ports() -> None:
    cmd = local.head_command(6379, 8265, "/tmp/x", num_cpus=2)
    assert cmd[1:4] == ["start", "--head", "--block"]
    assert "--node-ip-address=127.0.0.1" in cmd and "--dashboard-host=127.0.0.1" in cmd
    assert "--temp-dir=/tmp/x" in cmd and "--num-cpus=2" in cmd
    agent = next(c for c in cmd if c.startswith("--dashboard-agent-listen-port="))
    assert agent != "--dashboard-agent-listen-port=52365"
