"""The in-memory data set of one run: read, subsample, split, resize, normalize."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from maetune.trainers.data.config import DataConfig
from maetune.trainers.data.errors import DataError
from maetune.trainers.data.sources import RawData, read_source
from maetune.trainers.data.splits import cap_per_class, stratified_split
from maetune.trainers.data.transforms import channel_stats, minmax, resize, standardize

Part = tuple[np.ndarray, np.ndarray]


@dataclass(frozen=True, eq=False)
class DataBundle:
    """Train/val/test tensors of one data set, all in memory.

    Args:
        x_train: Training images ``(N, C, H, W)`` float32, normalized.
        y_train: Training labels ``(N,)`` int64.
        x_val: Validation images.
        y_val: Validation labels.
        x_test: Test images.
        y_test: Test labels.
        classes: Class names; label ``i`` means ``classes[i]``.
        pretrain_classes: Classes whose training images feed pretraining (``None``: all).
    """

    x_train: Tensor
    y_train: Tensor
    x_val: Tensor
    y_val: Tensor
    x_test: Tensor
    y_test: Tensor
    classes: tuple[str, ...]
    pretrain_classes: tuple[str, ...] | None = None

    @property
    def num_classes(self) -> int:
        """Number of classes."""
        return len(self.classes)

    @property
    def in_chans(self) -> int:
        """Image channels ``C``."""
        return int(self.x_train.shape[1])

    @property
    def img_size(self) -> int:
        """Side of the (square) images."""
        return int(self.x_train.shape[-1])

    def pretrain_images(self) -> Tensor:
        """Training images of ``pretrain_classes`` (all training images if it is ``None``).

        Raises:
            DataError: A name in ``pretrain_classes`` is not a class of this data set, or the named
                classes have no training images.
        """
        if self.pretrain_classes is None:
            return self.x_train
        return self.x_train[self._pretrain_mask()]

    def _pretrain_mask(self) -> Tensor:
        """Boolean ``(N_train,)`` mask of the training images of ``pretrain_classes``."""
        names = self.pretrain_classes or ()
        unknown = [name for name in names if name not in self.classes]
        if unknown:
            raise DataError(
                f"data.pretrain_classes names unknown class(es) {unknown}; available: {list(self.classes)}"
            )
        mask = torch.isin(self.y_train, torch.tensor([self.classes.index(name) for name in names]))
        if not bool(mask.any()):
            raise DataError(f"data.pretrain_classes {list(names)} select no training images")
        return mask


def _take(part: Part, indices: np.ndarray) -> Part:
    return part[0][indices], part[1][indices]


def _check_usable(raw: RawData) -> None:
    """Refuse fewer than two classes present and non-finite pixels."""
    present = np.unique(np.concatenate([labels for _, labels in raw.parts.values()]))
    if len(present) < 2:
        name = raw.classes[int(present[0])] if len(present) else "none"
        raise DataError(
            f"dataset {raw.origin} has only one class ({name!r}): classification needs at least two"
        )
    for part, (images, _) in raw.parts.items():
        if np.issubdtype(images.dtype, np.floating):
            bad = np.flatnonzero(~np.isfinite(images).reshape(len(images), -1).all(axis=1))
            if len(bad):
                raise DataError(
                    f"dataset {raw.origin} holds non-finite pixel values (NaN or inf) in "
                    f"{len(bad)} image(s) of part {part!r}, first at index {bad[0]}"
                )


def split_parts(raw: RawData, cfg: DataConfig) -> dict[str, Part]:
    """Subsample (``max_per_class``) and split ``raw`` into train/val/test, keeping any split it has.

    ``max_per_class`` applies to each part a source already has, separately; for an unsplit source it
    caps the whole class before the split.

    Args:
        raw: The source's images.
        cfg: The data config.

    Returns:
        ``{"train": (x, y), "val": (x, y), "test": (x, y)}`` as numpy arrays.
    """
    parts = dict(raw.parts)
    if cfg.max_per_class is not None:
        parts = {
            k: _take(p, cap_per_class(p[1], cfg.max_per_class, cfg.split_seed)) for k, p in parts.items()
        }
    split = {"classes": raw.classes, "origin": raw.origin}
    if "all" in parts:
        held_out = (cfg.val_fraction, cfg.test_fraction)
        train, val, test = stratified_split(parts["all"][1], held_out, cfg.split_seed, **split)
        return {
            "train": _take(parts["all"], train),
            "val": _take(parts["all"], val),
            "test": _take(parts["all"], test),
        }
    if "val" not in parts:
        train, val = stratified_split(parts["train"][1], (cfg.val_fraction,), cfg.split_seed, **split)
        return {
            "train": _take(parts["train"], train),
            "val": _take(parts["train"], val),
            "test": parts["test"],
        }
    return parts


def load_dataset(cfg: DataConfig) -> DataBundle:
    """Read, subsample, split, resize and normalize the data set ``cfg`` names.

    Args:
        cfg: The data config.

    Returns:
        The bundle of float32 image and int64 label tensors.

    Raises:
        DataError: Missing or corrupt files, one class, too few images to split, non-finite pixels,
            inconsistent or non-square images without ``image_size``, unknown ``pretrain_classes``.
    """
    raw = read_source(cfg)
    _check_usable(raw)
    parts = split_parts(raw, cfg)
    if len(parts["train"][1]) == 0:
        raise DataError(f"dataset {raw.origin} has no training images")
    x = {k: torch.from_numpy(np.ascontiguousarray(p[0])).float() for k, p in parts.items()}  # (N, C, H, W)
    y = {k: torch.from_numpy(np.ascontiguousarray(p[1])).long() for k, p in parts.items()}  # (N,)
    if cfg.image_size is not None:
        x = {k: resize(v, cfg.image_size) for k, v in x.items()}
    height, width = x["train"].shape[-2:]
    if height != width:
        raise DataError(
            f"dataset {raw.origin} holds {height}x{width} images, not square: set data.image_size"
        )
    if cfg.normalize == "minmax":
        x = {k: minmax(v) for k, v in x.items()}
    else:
        mean, std = channel_stats(x["train"])  # training split only: no peeking at val/test
        x = {k: standardize(v, mean, std) for k, v in x.items()}
    bundle = DataBundle(
        x["train"], y["train"], x["val"], y["val"], x["test"], y["test"], raw.classes, cfg.pretrain_classes
    )
    if bundle.pretrain_classes is not None:
        bundle._pretrain_mask()  # fail now, not at the start of pretraining, on an unknown class name
    return bundle
