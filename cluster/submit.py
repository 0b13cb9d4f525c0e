"""`maetune submit`: the plain ``ray job submit`` command, with the parts people get wrong filled in.

It builds exactly the command the README documents and runs it: the job server's address (the local
head's, if ``maetune cluster start`` made one), ``RAY_AUTH_MODE=token`` for the client, the repo as
working dir (``.rayignore`` keeps data and results out of the upload), and ``MLFLOW_TRACKING_URI`` in
the job's runtime environment, refused unless it names a tracking server: a job given a
``sqlite:///`` or file store would write it inside its temporary working dir, where it is lost.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from maetune.cluster import auth
from maetune.cluster.local import DEFAULT_TEMP_DIR, is_alive, read_state


def _ray_executable() -> str:
    beside = Path(sys.executable).with_name("ray")
    return str(beside) if beside.exists() else "ray"


def resolve_address(address: str | None, temp_dir: str = DEFAULT_TEMP_DIR) -> str:
    """The job server: ``--address``, else the running local head, else ``RAY_API_SERVER_ADDRESS``."""
    if address:
        return address
    state = read_state(temp_dir)
    if state is not None and is_alive(state):
        return state.dashboard_url
    env = os.environ.get("RAY_API_SERVER_ADDRESS")
    if env:
        return env
    raise ValueError(
        "no Ray job server: give --address http://HOST:8265, set RAY_API_SERVER_ADDRESS, "
        "or run `maetune cluster start`"
    )


def resolve_tracking_uri(tracking_uri: str | None) -> str:
    """``--tracking-uri`` or ``MLFLOW_TRACKING_URI``; it must be an http(s) tracking server."""
    uri = tracking_uri or os.environ.get("MLFLOW_TRACKING_URI")
    if not uri:
        raise ValueError(
            "no MLflow tracking server: give --tracking-uri http://HOST:5000 or set MLFLOW_TRACKING_URI"
        )
    if not uri.startswith(("http://", "https://")):
        raise ValueError(
            f"MLFLOW_TRACKING_URI {uri!r} is not a tracking server URL: a job would write it inside its "
            "temporary working dir; start one with `maetune ui` and pass its http:// URL"
        )
    return uri


def submit_argv(
    address: str,
    tracking_uri: str,
    command: Sequence[str],
    working_dir: str = ".",
    no_wait: bool = False,
) -> list[str]:
    """The ``ray job submit`` argv that runs ``maetune COMMAND`` as a job."""
    argv = [
        _ray_executable(),
        "job",
        "submit",
        "--address",
        address,
        "--working-dir",
        working_dir,
        "--runtime-env-json",
        json.dumps({"env_vars": {"MLFLOW_TRACKING_URI": tracking_uri}}),
    ]
    if no_wait:
        argv.append("--no-wait")
    return [*argv, "--", "maetune", *command]


def shell_line(argv: Sequence[str]) -> str:
    """The argv as one copy-pasteable shell line, with the client's token mode in front."""
    return "RAY_AUTH_MODE=token " + " ".join(shlex.quote(a) for a in ["ray", *argv[1:]])


def submit(argv: Sequence[str]) -> int:
    """Run ``ray job submit`` with token mode on; returns its exit code (the job's, unless --no-wait)."""
    print(shell_line(argv), file=sys.stderr, flush=True)
    return subprocess.call(list(argv), env=auth.client_env())


def storage_warning(command: Sequence[str]) -> str | None:
    """A warning when the search's results would land in the job's temporary working dir."""
    if any("train.storage_path=" in c for c in command):
        return None
    return (
        "note: no --set train.storage_path=...: Ray results and the Optuna study go to the job's "
        "temporary working dir; give a shared absolute path to keep them"
    )
