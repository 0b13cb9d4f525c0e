"""Raw images as read from each source, before splitting, resizing and normalization."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from maetune.trainers.data.config import DataConfig
from maetune.trainers.data.errors import DataError

# The part names a source may return: "all" (the loader splits it), "train" + "test" (the loader carves
# validation out of train) or "train" + "val" + "test" (kept as is).
PART_LAYOUTS = (("all",), ("train", "test"), ("train", "val", "test"))


@dataclass(frozen=True)
class RawData:
    """Images and labels as a source holds them.

    Args:
        classes: Class names; label ``i`` means ``classes[i]``.
        parts: Part name -> (images ``(N, C, H, W)`` of any real dtype, labels int64 ``(N,)``); the keys
            are one of ``PART_LAYOUTS``.
        origin: The path (or data set name) to name in error messages.
    """

    classes: tuple[str, ...]
    parts: Mapping[str, tuple[np.ndarray, np.ndarray]]
    origin: str

    def __post_init__(self) -> None:
        if tuple(self.parts) not in PART_LAYOUTS:
            raise ValueError(f"RawData parts must be one of {PART_LAYOUTS}, got {tuple(self.parts)}")


def read_source(cfg: DataConfig) -> RawData:
    """Read the images of ``cfg.name`` from disk (or scikit-learn / the lensing simulator).

    Args:
        cfg: The data config.

    Returns:
        The raw images and labels, split only where the source itself is split.

    Raises:
        DataError: The source is missing, corrupt or unusable.
    """
    # Readers are imported here so that a missing optional dependency only bites its own source.
    if cfg.name == "digits":
        return read_digits()
    if cfg.name == "mnist-idx":
        from maetune.trainers.data.idx import read_mnist_idx

        return read_mnist_idx(existing_path(cfg.path))
    if cfg.name == "npz":
        from maetune.trainers.data.npz import read_npz

        return read_npz(existing_path(cfg.path))
    if cfg.name == "deeplense":
        from maetune.trainers.data.folders import read_class_folders

        return read_class_folders(existing_path(cfg.path), allow_pickle=cfg.allow_pickle)
    if cfg.name == "lens-sim":
        from maetune.trainers.data.folders import read_class_folders
        from maetune.trainers.data.lensing import ensure_lens_sim

        # Simulated files are plain float arrays: never unpickle them.
        return read_class_folders(existing_path(str(ensure_lens_sim(cfg))), allow_pickle=False)
    raise DataError(f"data.name {cfg.name!r} has no reader")


def read_digits() -> RawData:
    """Read scikit-learn's bundled 8x8 digits (16 gray levels, always offline).

    Returns:
        1797 images ``(N, 1, 8, 8)`` float64 in [0, 16], classes ``"0"`` .. ``"9"``, unsplit.
    """
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    images = x.reshape(-1, 1, 8, 8)  # (N, 1, 8, 8)
    return RawData(tuple(str(i) for i in range(10)), {"all": (images, y.astype(np.int64))}, "digits")


def existing_path(path: str | None) -> Path:
    """Return ``path`` as a ``Path``, or raise a ``DataError`` if it is unset or does not exist."""
    if not path:
        raise DataError("data.path is not set")
    resolved = Path(path).expanduser()
    if not resolved.exists():
        raise DataError(f"data.path {resolved} does not exist")
    return resolved


def class_names_for(labels: list[np.ndarray], origin: str) -> tuple[str, ...]:
    """Class names ``"0"`` .. ``"K-1"`` for integer labels, K = largest label + 1.

    Args:
        labels: The label arrays of every part.
        origin: The path to name in error messages.

    Raises:
        DataError: A label is negative or there are no labels.
    """
    if not labels or all(part.size == 0 for part in labels):
        raise DataError(f"{origin} holds no labels")
    low = min(int(part.min()) for part in labels if part.size)
    high = max(int(part.max()) for part in labels if part.size)
    if low < 0:
        raise DataError(f"{origin} holds negative label {low}: labels must be 0 .. K-1")
    return tuple(str(i) for i in range(high + 1))
