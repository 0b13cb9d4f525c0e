"""``maetune cluster start|stop|status``, ``maetune ui`` and ``maetune submit``: argument wiring only.

The work is in `maetune.cluster` (local, mlflow_server, submit). Errors are raised as ValueError or
RuntimeError with one line; `maetune.cli.main` prints them.
"""

from __future__ import annotations

import argparse
import sys

from maetune.cluster.local import DEFAULT_DASHBOARD_PORT, DEFAULT_PORT, DEFAULT_TEMP_DIR
from maetune.cluster.mlflow_server import DEFAULT_BACKEND, DEFAULT_HOST
from maetune.cluster.mlflow_server import DEFAULT_PORT as DEFAULT_UI_PORT


def cmd_cluster_start(args: argparse.Namespace) -> int:
    """Start the local Ray head and print how to reach it."""
    from maetune.cluster.local import start_head, submit_command

    state = start_head(args.port, args.dashboard_port, args.temp_dir, args.num_cpus, args.num_gpus)
    print(f"Ray head running (pid {state.pid}), token authentication on")
    print(f"  Ray address (ray.init, maetune --address):  {state.gcs_address}")
    print(f"  dashboard and job server:                    {state.dashboard_url}")
    print(f"  auth token:                                  {state.token_source}")
    print(f"  log:                                         {state.log}")
    print("Submit a search (after `maetune ui` in another terminal):")
    print(f"  {submit_command(state)}")
    print(f"Stop it: maetune cluster stop{_temp_flag(args.temp_dir)}")
    return 0


def cmd_cluster_stop(args: argparse.Namespace) -> int:
    """Stop the head that `cluster start` started (only that one)."""
    from maetune.cluster.local import stop_head

    state = stop_head(args.temp_dir)
    print(
        f"stopped the Ray head at {state.dashboard_url}"
        if state
        else f"no Ray head recorded in {args.temp_dir}"
    )
    return 0


def cmd_cluster_status(args: argparse.Namespace) -> int:
    """Print whether the recorded head runs; exit code 1 if it does not."""
    from maetune.cluster.local import is_alive, job_server_ready, read_state

    state = read_state(args.temp_dir)
    if state is None or not is_alive(state):
        print(f"no Ray head running (temp dir {args.temp_dir})")
        return 1
    from maetune.cluster import auth

    source = state.token_source  # the token the head was started with
    env = {auth.TOKEN_PATH: source} if source != auth.TOKEN else None
    jobs = "answers" if job_server_ready(state.dashboard_url, auth.read_token(env)) else "does not answer"
    print(
        f"Ray head running (pid {state.pid}) at {state.gcs_address}; job server {state.dashboard_url} {jobs}"
    )
    return 0


def cmd_ui(args: argparse.Namespace) -> int:
    """Run the MLflow tracking server and UI in the foreground."""
    from maetune.cluster.mlflow_server import run_server

    extra = list(args.mlflow_args)
    if extra[:1] == ["--"]:
        extra = extra[1:]
    if args.basic_auth:
        extra = ["--app-name", "basic-auth", *extra]
    return run_server(
        args.backend_store_uri, args.artifacts_destination, args.host, args.port, args.workers, extra
    )


def cmd_submit(args: argparse.Namespace) -> int:
    """Submit ``maetune COMMAND`` as a Ray job with the plain ``ray job submit``."""
    from maetune.cluster import submit

    command = list(args.maetune_command)
    if command[:1] == ["--"]:
        command = command[1:]
    if not command:
        raise ValueError(
            "give the maetune command to run, e.g. maetune submit -- search --config configs/smoke.yaml"
        )
    argv = submit.submit_argv(
        submit.resolve_address(args.address, args.temp_dir),
        submit.resolve_tracking_uri(args.tracking_uri),
        command,
        no_wait=args.no_wait,
    )
    warning = submit.storage_warning(command)
    if warning:
        print(warning, file=sys.stderr)
    if args.dry_run:
        print(submit.shell_line(argv))
        return 0
    return submit.submit(argv)


def _temp_flag(temp_dir: str) -> str:
    return "" if temp_dir == DEFAULT_TEMP_DIR else f" --temp-dir {temp_dir}"


def _add_temp_dir(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--temp-dir",
        default=DEFAULT_TEMP_DIR,
        help=f"the head's Ray temp dir, which also holds its state file (default {DEFAULT_TEMP_DIR})",
    )


def add_cluster_parser(subparsers: argparse._SubParsersAction) -> None:
    """Add ``cluster start|stop|status``, ``ui`` and ``submit``; each sets ``func`` returning an exit code.

    Args:
        subparsers: The top-level parser's ``add_subparsers()`` object.
    """
    cluster = subparsers.add_parser("cluster", help="a local Ray head on 127.0.0.1 with token auth")
    commands = cluster.add_subparsers(dest="cluster_command", required=True, metavar="{start,stop,status}")

    p = commands.add_parser("start", help="start a Ray head (GCS, dashboard, job server) on 127.0.0.1")
    p.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"GCS port (default {DEFAULT_PORT})")
    p.add_argument(
        "--dashboard-port",
        type=int,
        default=DEFAULT_DASHBOARD_PORT,
        help=f"dashboard and job-server port (default {DEFAULT_DASHBOARD_PORT})",
    )
    p.add_argument("--num-cpus", type=int, default=None, help="CPUs to offer (default: all)")
    p.add_argument("--num-gpus", type=int, default=None, help="GPUs to offer (default: all detected)")
    _add_temp_dir(p)
    p.set_defaults(func=cmd_cluster_start)

    p = commands.add_parser("stop", help="stop the head that `cluster start` started, and nothing else")
    _add_temp_dir(p)
    p.set_defaults(func=cmd_cluster_stop)

    p = commands.add_parser("status", help="whether the head runs (exit code 1 if not)")
    _add_temp_dir(p)
    p.set_defaults(func=cmd_cluster_status)

    p = subparsers.add_parser(
        "ui",
        help="MLflow tracking server and UI (database backend, proxied artifacts), in the foreground",
        description="Run `mlflow server` until Ctrl-C. Options after `--` go to `mlflow server` as they are.",
    )
    p.add_argument(
        "--backend-store-uri",
        default=DEFAULT_BACKEND,
        help=f"SQLAlchemy URL of the run database (default {DEFAULT_BACKEND}; e.g. postgresql://...)",
    )
    p.add_argument(
        "--artifacts-destination",
        default=None,
        help="where the server stores artifacts: a folder or s3://... (default ./mlartifacts)",
    )
    p.add_argument("--host", default=DEFAULT_HOST, help=f"interface to bind (default {DEFAULT_HOST})")
    p.add_argument("--port", type=int, default=DEFAULT_UI_PORT, help=f"port (default {DEFAULT_UI_PORT})")
    p.add_argument("--workers", type=int, default=1, help="server worker processes (default 1)")
    p.add_argument(
        "--basic-auth",
        action="store_true",
        help="MLflow's basic-auth app (users and passwords; needs mlflow[auth])",
    )
    p.add_argument("mlflow_args", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    p.set_defaults(func=cmd_ui)

    p = subparsers.add_parser(
        "submit",
        help="run a maetune command as a Ray job (prints and runs the plain `ray job submit`)",
        description="Fills in the job server address, RAY_AUTH_MODE=token and MLFLOW_TRACKING_URI, "
        "then runs `ray job submit --working-dir . -- maetune COMMAND`.",
    )
    p.add_argument(
        "--address", default=None, help="job server URL (default: the local head, RAY_API_SERVER_ADDRESS)"
    )
    p.add_argument("--tracking-uri", default=None, help="MLflow server URL (default: MLFLOW_TRACKING_URI)")
    p.add_argument("--no-wait", action="store_true", help="return after submitting; do not follow the logs")
    p.add_argument("--dry-run", action="store_true", help="print the command, do not run it")
    _add_temp_dir(p)
    p.add_argument("maetune_command", nargs=argparse.REMAINDER, metavar="-- COMMAND", help="maetune command")
    p.set_defaults(func=cmd_submit)
