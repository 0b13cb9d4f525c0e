"""Deterministic per-class subsampling and stratified train/val/test splits."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from maetune.trainers.data.errors import DataError


def cap_per_class(labels: np.ndarray, max_per_class: int, seed: int) -> np.ndarray:
    """Indices keeping the first ``max_per_class`` of each class after a seeded shuffle.

    Args:
        labels: Int labels ``(N,)``.
        max_per_class: Most images kept per class.
        seed: Shuffle seed.

    Returns:
        Sorted indices into ``labels``.
    """
    order = np.random.default_rng(seed).permutation(len(labels))
    kept = [order[labels[order] == c][:max_per_class] for c in np.unique(labels)]
    return np.sort(np.concatenate(kept)) if kept else np.empty(0, dtype=np.int64)


def stratified_split(
    labels: np.ndarray,
    held_out: Sequence[float],
    seed: int,
    *,
    classes: Sequence[str],
    origin: str,
) -> list[np.ndarray]:
    """Split indices per class into train plus one part per held-out fraction.

    Each held-out part gets ``max(1, round(n_c * fraction))`` images of every class ``c`` and train the
    rest, so every class is in every part. Written here rather than with scikit-learn's
    ``train_test_split(stratify=...)``, which can leave a small class out of a part and whose errors do not
    name the class.

    Args:
        labels: Int labels ``(N,)``.
        held_out: Fractions of each class for the held-out parts (e.g. ``(val, test)``).
        seed: Seed of the per-class shuffle.
        classes: Class names, for error messages.
        origin: The data set path or name, for error messages.

    Returns:
        ``[train, *held_out_parts]``, each sorted indices into ``labels``; disjoint, covering all.

    Raises:
        DataError: A class with too few images to give every part at least one.
    """
    rng = np.random.default_rng(seed)
    parts: list[list[np.ndarray]] = [[] for _ in range(len(held_out) + 1)]
    for c, name in enumerate(classes):
        members = rng.permutation(np.flatnonzero(labels == c))
        sizes = [max(1, round(len(members) * f)) for f in held_out]
        if len(members) - sum(sizes) < 1:
            raise DataError(
                f"class {name!r} in {origin} has only {len(members)} image(s): too few to split into "
                f"train and {len(held_out)} held-out part(s) of fractions {tuple(held_out)}"
            )
        bounds = np.cumsum([0, *sizes])
        for k in range(len(held_out)):
            parts[k + 1].append(members[bounds[k] : bounds[k + 1]])
        parts[0].append(members[bounds[-1] :])
    return [np.sort(np.concatenate(p)) for p in parts]
