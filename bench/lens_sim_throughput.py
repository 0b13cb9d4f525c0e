"""Images per second of lensing simulation with 1 and 2 worker processes, measured in one run.

Each measurement simulates a fresh set (files and metadata written, worker processes started) after a
warm-up with every worker count, which imports lenstronomy and astropy (~4 s) and starts the fork server
once, so one-off start-up is not counted as throughput. Prints the rates and their ratio and writes
``bench/results/lens_sim_throughput.json``.

    python bench/lens_sim_throughput.py [--per-class 300] [--workers 1 2]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

from maetune.trainers.data.lensing import CLASSES, simulate

RESULTS = Path(__file__).parent / "results" / "lens_sim_throughput.json"


def measure(per_class: int, workers: int, root: Path) -> float:
    """Images per second of one ``simulate`` call with ``workers`` processes."""
    start = time.perf_counter()
    simulate(root / f"w{workers}", per_class, seed=workers, workers=workers, progress=False)
    return len(CLASSES) * per_class / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-class", type=int, default=300)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="lens-sim-bench-") as tmp:
        for workers in args.workers:  # imports, caches, fork server
            simulate(Path(tmp) / f"warm-up-{workers}", 2, workers=workers, progress=False)
        rates = {w: measure(args.per_class, w, Path(tmp)) for w in args.workers}
    base = rates[args.workers[0]]
    for workers, rate in rates.items():
        print(f"lens-sim, {workers} worker(s): {rate:7.1f} images/s  ({rate / base:.2f}x)")
    result = {
        "per_class": args.per_class,
        "images": len(CLASSES) * args.per_class,
        "images_per_second": {str(w): round(r, 1) for w, r in rates.items()},
        "ratio": {str(w): round(r / base, 2) for w, r in rates.items()},
        "cpu_count": os.cpu_count(),
        "load_average": os.getloadavg(),
        "machine": platform.machine(),
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=1))
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
