"""Draw ``docs/lens_sim_vs_real.png``: simulated images of each class beside the three real DeepLense ones.

python bench/plot_lens_sim_vs_real.py [--per-class 4] [--out docs/lens_sim_vs_real.png]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from maetune.trainers.data.lensing import CLASSES, draw_image
from maetune.trainers.data.lensing_imaging import render_image

ROOT = Path(__file__).resolve().parents[1]
REAL = ROOT.parent / "shared" / "data" / "deeplense-samples"


def real_image(kind: str) -> np.ndarray:
    """The real sample of ``kind`` (our own trusted shared file; DeepLense axion may be (image, mass))."""
    (path,) = sorted((REAL / kind).glob("*.npy"))
    array = np.load(path, allow_pickle=True)
    return array[0] if array.dtype == object else array


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-class", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "lens_sim_vs_real.png")
    args = parser.parse_args()
    cols = args.per_class + 1
    fig, axes = plt.subplots(len(CLASSES), cols, figsize=(1.7 * cols, 1.85 * len(CLASSES)), squeeze=False)
    for row, kind in enumerate(CLASSES):
        panels = [("real", real_image(kind))]
        for i in range(args.per_class):
            draw, rng = draw_image(args.seed, kind, i)
            note = {
                "cdm": f"{len(draw.subhalo_masses)} subhalos",
                "axion": f"m_a={draw.axion_mass or 0:.1e} eV",
            }.get(kind, f'θE={draw.theta_e:.2f}"')
            panels.append((note, render_image(draw, rng)))
        for col, (title, image) in enumerate(panels):
            ax = axes[row][col]
            ax.imshow(image, cmap="gray", vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(title, fontsize=7)
            if col == 0:
                ax.set_ylabel(kind, fontsize=9)
    fig.suptitle("lens-sim (right) vs real DeepLense Model II samples (left column)", fontsize=9)
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=110)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
