"""The `maetune` command: parse, dispatch, turn known errors into one line. Nothing else."""

from __future__ import annotations

import argparse
import dataclasses
import os
import signal
import sys
from collections.abc import Sequence

DEFAULT_CONFIG = "configs/quick.yaml"


def _add_config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--config",
        default=DEFAULT_CONFIG,
        help="YAML config file, or a preset name (quick, smoke, mnist, seed-128, ...)",
    )
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override one setting, e.g. --set model.embed_dim=256 (repeatable)",
    )
    p.add_argument("--address", default=None, help="Ray cluster address (default: RAY_ADDRESS or local Ray)")


def cmd_run(args: argparse.Namespace) -> int:
    """Run one configuration through pretrain -> probe -> finetune and log one MLflow run."""
    from maetune.search.single import run_single
    from maetune.trainers.config import load_run_config

    cfg = load_run_config(args.config, args.overrides)
    run_id, metrics = run_single(cfg, address=args.address, in_process=args.in_process)
    keys = (
        "probe_test_acc",
        "probe_test_auc_micro",
        "test_acc",
        "test_auc_micro",
        "test_auc_macro",
        "encoder_params",
        "head_params",
        "total_params",
    )
    print(f"run {run_id}")
    for k in keys:
        v = metrics.get(k)
        print(f"  {k:22s} {v:.4f}" if isinstance(v, float) else f"  {k:22s} {v}")
    return 0


def cmd_search(args: argparse.Namespace) -> int:
    """Run (or resume) a Ray Tune + Optuna search and print its report."""
    from maetune.search.config import load_search
    from maetune.search.tune_driver import run_search

    base, search, tree = load_search(args.config, args.overrides)
    if args.name:
        search = dataclasses.replace(search, name=args.name)
    summary = run_search(base, search, tree.get("search") or {}, resume=args.resume, address=args.address)
    print(summary["text"])
    print(f"search {summary['name']}: MLflow parent run {summary['parent_run_id']}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    """Print and write the trade-off table and Pareto front of a search."""
    from pathlib import Path

    from maetune.search import tracking
    from maetune.search.summary import parent_runs, summarize

    client = tracking.connect()
    parent = parent_runs(client, args.experiment)[0] if not args.run else client.get_run(args.run)
    out = Path(args.out)
    summary = summarize(
        client, args.experiment, parent.info.run_id, out_dir=out, log_to_parent=False, register=False
    )
    print(summary["text"])
    print(f"wrote pareto.png, tradeoff.csv, tradeoff.png, best_config.yaml to {out}")
    return 0


def cmd_reproduce(args: argparse.Namespace) -> int:
    """Rerun a recorded configuration and compare recorded against reproduced metrics."""
    from maetune.search.reproduce import reproduce

    new_id, rows, ok = reproduce(
        args.run_id,
        best=args.best,
        experiment=args.experiment,
        tolerance=args.tolerance,
        address=args.address,
    )
    print(f"reproduction run {new_id}")
    print(f"  {'metric':22s} {'recorded':>10s} {'reproduced':>10s} {'diff':>8s} {'tol':>8s}")
    for r in rows:
        print(
            f"  {r['metric']:22s} {r['recorded']:10.4f} {r['reproduced']:10.4f} {r['difference']:8.4f} "
            f"{r['tolerance']:8.4f} {'ok' if r['ok'] else 'DIFFERS'}"
        )
    if not ok:
        print(
            "maetune: error: reproduced metrics differ from the recorded ones beyond tolerance",
            file=sys.stderr,
        )
        return 3
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every subcommand."""
    from maetune import __version__

    parser = argparse.ArgumentParser(prog="maetune", description=__doc__)
    parser.add_argument("--version", action="version", version=f"maetune {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("run", help="one configuration: pretrain -> probe -> finetune, logged to MLflow")
    _add_config_args(p)
    p.add_argument("--in-process", action="store_true", help="run the stages in this process, without Ray")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser(
        "search", help="Ray Tune + Optuna search over the MAE recipe (default: configs/quick.yaml)"
    )
    _add_config_args(p)
    p.add_argument("--resume", action="store_true", help="continue the latest (or --name) interrupted search")
    p.add_argument(
        "--name", default=None, help="search name (Tune experiment, Optuna study, MLflow parent run)"
    )
    p.set_defaults(func=cmd_search)

    p = sub.add_parser("report", help="trade-off table and Pareto front of a finished or running search")
    p.add_argument("--experiment", default="maetune-quick", help="MLflow experiment (default: maetune-quick)")
    p.add_argument("--run", default=None, help="a search's parent run id (default: the latest search)")
    p.add_argument("--out", default="maetune-report", help="folder for the PNG and CSV files")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("reproduce", help="rerun a recorded run (or the best trial) and compare metrics")
    p.add_argument("run_id", nargs="?", default=None, help="MLflow run id to rerun")
    p.add_argument("--best", action="store_true", help="the best trial of the experiment's latest search")
    p.add_argument("--experiment", default="maetune-quick", help="MLflow experiment for --best")
    p.add_argument(
        "--tolerance", type=float, default=None, help="allowed absolute difference (default: see docs)"
    )
    p.add_argument("--address", default=None, help="Ray cluster address")
    p.set_defaults(func=cmd_reproduce)

    try:
        from maetune.cli_data import add_data_parser
    except ImportError:  # the data commands are optional until the simulator lands
        pass
    else:
        add_data_parser(sub)
    from maetune.cli_cluster import add_cluster_parser

    add_cluster_parser(sub)
    return parser


def _known_errors() -> tuple[type[BaseException], ...]:
    # ConfigError and DataError are ValueErrors; TrackingError and ClusterError are RuntimeErrors.
    return (ValueError, RuntimeError, OSError)


def _terminate(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `maetune` console script."""
    args = build_parser().parse_args(argv)
    # SIGTERM (`ray job stop`, a scheduler) unwinds like Ctrl-C: runs end KILLED, not left RUNNING.
    signal.signal(signal.SIGTERM, _terminate)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("maetune: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        if os.environ.get("MAETUNE_DEBUG"):
            raise
        message = " ".join(str(exc).split()) or type(exc).__name__
        if not isinstance(exc, _known_errors()):
            message = f"unexpected {type(exc).__name__}: {message} (set MAETUNE_DEBUG=1 for the traceback)"
        print(f"maetune: error: {message}", file=sys.stderr)
        return 2 if isinstance(exc, ValueError) else 1
