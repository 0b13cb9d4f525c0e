"""The `maetune` command: parse, dispatch, turn known errors into one line. Nothing else."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

DEFAULT_CONFIG = "configs/quick.yaml"


def _add_config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", default=DEFAULT_CONFIG,
                   help="YAML config file, or a preset name (quick, smoke, mnist, seed-128, ...)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override one setting, e.g. --set model.embed_dim=256 (repeatable)")
    p.add_argument("--address", default=None, help="Ray cluster address (default: RAY_ADDRESS or local Ray)")


def cmd_run(args: argparse.Namespace) -> int:
    """Run one configuration through pretrain -> probe -> finetune and log one MLflow run."""
    from maetune.search.single import run_single
    from maetune.trainers.config import load_run_config

    cfg = load_run_config(args.config, args.overrides)
    run_id, metrics = run_single(cfg, address=args.address, in_process=args.in_process)
    keys = ("probe_test_acc", "probe_test_auc_micro", "test_acc", "test_auc_micro", "test_auc_macro",
            "encoder_params", "head_params", "total_params")
    print(f"run {run_id}")
    for k in keys:
        v = metrics.get(k)
        print(f"  {k:22s} {v:.4f}" if isinstance(v, float) else f"  {k:22s} {v}")
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

    try:
        from maetune.cli_data import add_data_parser
    except ImportError:  # the data commands are optional until the simulator lands
        pass
    else:
        add_data_parser(sub)
    return parser


def _known_errors() -> tuple[type[BaseException], ...]:
    from maetune.cluster.session import ClusterError
    from maetune.search.tracking import TrackingError

    return (ValueError, TrackingError, ClusterError, RuntimeError, FileNotFoundError, PermissionError)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `maetune` console script."""
    args = build_parser().parse_args(argv)
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
