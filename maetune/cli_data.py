"""``maetune data simulate`` and ``maetune data info``: argument wiring only, the work is in trainers.data."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _non_negative(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def add_data_parser(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``data`` command with its ``simulate`` and ``info`` subcommands.

    Each subcommand sets ``func``: a callable taking the parsed ``Namespace`` and returning an exit code.

    Args:
        subparsers: The top-level parser's ``add_subparsers()`` object.
    """
    data = subparsers.add_parser("data", help="simulate or inspect data sets")
    commands = data.add_subparsers(dest="data_command", required=True, metavar="{simulate,info}")

    sim = commands.add_parser(
        "simulate",
        help="simulate DeepLense-style strong-lensing images",
        description="Write class folders no_sub/, cdm/, axion/ of .npy images and "
        "metadata.json; rerun the same command to resume an interrupted run.",
    )
    sim.add_argument("--out", type=Path, required=True, help="output folder (DeepLense layout)")
    sim.add_argument("--per-class", type=_positive, required=True, help="images per class")
    sim.add_argument("--seed", type=_non_negative, default=0, help="simulator seed (default 0)")
    sim.add_argument("--image-size", type=_positive, default=64, help="pixels per side (default 64)")
    sim.add_argument("--workers", type=_non_negative, default=0, help="processes (default 0: all cores)")
    sim.add_argument(
        "--deeplense-format",
        action="store_true",
        help="write axion files as DeepLense does: pickled (image, mass) object arrays",
    )
    sim.add_argument("--no-progress", action="store_true", help="no progress bar")
    sim.set_defaults(func=run_simulate)

    info = commands.add_parser(
        "info",
        help="classes, counts, pixel statistics and an example grid",
        description="Describe a folder of class folders, lens-sim (the default "
        "cached simulated set) or a data set name.",
    )
    info.add_argument("target", metavar="PATH|NAME", help="folder of class folders, lens-sim, or a name")
    info.add_argument("--png", type=Path, default=None, help="also write a PNG grid of examples here")
    info.add_argument("--per-class", type=_positive, default=4, help="examples per class in the PNG")
    info.add_argument(
        "--allow-pickle",
        action="store_true",
        help="read DeepLense object-array files (unpickling runs code from the file)",
    )
    info.add_argument("--json", action="store_true", help="print the description as JSON")
    info.set_defaults(func=run_info)


def run_simulate(args: argparse.Namespace) -> int:
    """Simulate a lensing set as ``args`` asks; print its folder."""
    from maetune.trainers.data.lensing import simulate

    out = simulate(
        args.out,
        args.per_class,
        seed=args.seed,
        image_size=args.image_size,
        workers=args.workers,
        deeplense_format=args.deeplense_format,
        progress=not args.no_progress,
    )
    print(f"wrote {3 * args.per_class} images to {out} (metadata in {out / 'metadata.json'})")
    return 0


def run_info(args: argparse.Namespace) -> int:
    """Print a data set's description (and write its example grid if ``--png``)."""
    from maetune.trainers.data.survey import describe, plot_examples

    found = describe(args.target, allow_pickle=args.allow_pickle)
    if args.json:
        print(json.dumps(found, indent=1))
    else:
        print(f"{found['origin']}: {found['total']} images, shape {tuple(found['shape'])}, {found['dtype']}")
        for name in found["classes"]:
            stats = found["per_class"][name]
            print(
                f"  {name:>10}: {found['counts'][name]:>7}  min {stats['min']:.3g}  max {stats['max']:.3g}"
                f"  mean {stats['mean']:.4f}  <0.1 {stats['frac_below_0.1']:.3f}"
            )
        stats = found["pixels"]
        print(
            f"  {'all':>10}: {found['total']:>7}  min {stats['min']:.3g}  max {stats['max']:.3g}"
            f"  mean {stats['mean']:.4f}  <0.1 {stats['frac_below_0.1']:.3f}"
            f"  (pixel statistics over up to {max(found['sampled'].values())} images per class)"
        )
    if args.png is not None:
        print(f"wrote {plot_examples(args.target, args.png, args.per_class, args.allow_pickle)}")
    return 0
