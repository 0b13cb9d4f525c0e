"""Figures people would rather look at than read: reconstructions, ROC curves, confusion matrices.

Pure matplotlib on the Agg backend, writing PNG files; no MLflow here.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from maetune.trainers.metrics import roc_curves


def _show(ax: plt.Axes, img: np.ndarray) -> None:
    """Draw one (C, H, W) image: gray for one channel, RGB clipped to [0, 1] otherwise."""
    if img.shape[0] == 1:
        ax.imshow(img[0], cmap="inferno")
    else:
        ax.imshow(np.clip(np.transpose(img[:3], (1, 2, 0)), 0, 1))
    ax.set_xticks([])
    ax.set_yticks([])


def reconstruction_grid(recons: dict[str, np.ndarray], out: Path, title: str = "") -> Path:
    """Rows original / masked / reconstruction, one column per sample.

    Args:
        recons: ``original``, ``masked``, ``reconstruction`` arrays of shape (N, C, H, W).
        out: PNG path to write.
        title: Figure title.
    """
    rows = ("original", "masked", "reconstruction")
    n = len(recons["original"])
    fig, axes = plt.subplots(3, n, figsize=(1.4 * n + 0.8, 4.6), squeeze=False)
    for r, name in enumerate(rows):
        for c in range(n):
            _show(axes[r][c], recons[name][c])
        axes[r][0].set_ylabel(name, fontsize=9)
    fig.suptitle(title or "MAE reconstructions (test images)", fontsize=10)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def roc_plot(
    probs: np.ndarray, labels: np.ndarray, classes: Sequence[str], out: Path, title: str = ""
) -> Path:
    """One-vs-rest ROC curves per class and the micro-average, with their AUCs in the legend."""
    curves = roc_curves(probs, labels, len(classes))
    fig, ax = plt.subplots(figsize=(5.2, 4.6))
    for key, (fpr, tpr) in curves.items():
        auc = float(np.trapezoid(tpr, fpr))
        name = "micro-average" if key == "micro" else classes[int(key)]
        ax.plot(
            fpr,
            tpr,
            lw=2.2 if key == "micro" else 1.2,
            ls="--" if key == "micro" else "-",
            label=f"{name} (AUC {auc:.3f})",
        )
    ax.plot([0, 1], [0, 1], color="0.7", lw=0.8)
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.set_title(title or "ROC, one-vs-rest (test)", fontsize=10)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def confusion_plot(matrix: np.ndarray, classes: Sequence[str], out: Path, title: str = "") -> Path:
    """Confusion matrix with counts and row-normalized shading (true rows, predicted columns)."""
    rows = matrix.sum(axis=1, keepdims=True).clip(min=1)
    share = matrix / rows
    k = len(classes)
    fig, ax = plt.subplots(figsize=(1.0 + 0.55 * k + 2.5, 0.55 * k + 2.5))
    ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    for i in range(k):
        for j in range(k):
            ax.text(
                j,
                i,
                str(int(matrix[i, j])),
                ha="center",
                va="center",
                fontsize=8,
                color="white" if share[i, j] > 0.5 else "black",
            )
    ax.set_xticks(range(k), classes, rotation=45 if k > 4 else 0, fontsize=8)
    ax.set_yticks(range(k), classes, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title or "confusion matrix (test)", fontsize=10)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
