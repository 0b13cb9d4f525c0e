"""MedMNIST-layout ``.npz`` files: ``{train,val,test}_{images,labels}``, the file's own split kept."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from maetune.trainers.data.errors import DataError
from maetune.trainers.data.sources import RawData, class_names_for

SPLITS = ("train", "val", "test")
_ZIP_MAGIC = b"PK\x03\x04"


def _images(array: np.ndarray, key: str, path: Path) -> np.ndarray:
    """``(N, H, W)`` or ``(N, H, W, C)`` -> ``(N, C, H, W)``."""
    if array.ndim == 3:
        return array[:, None]  # (N, 1, H, W)
    if array.ndim == 4:
        return np.ascontiguousarray(array.transpose(0, 3, 1, 2))  # (N, C, H, W)
    raise DataError(f"{path}: {key} has shape {array.shape}; expected (N, H, W) or (N, H, W, C)")


def _labels(array: np.ndarray, key: str, path: Path) -> np.ndarray:
    """``(N,)`` or ``(N, 1)`` integer labels -> int64 ``(N,)``."""
    if array.ndim == 2 and array.shape[1] != 1:
        raise DataError(
            f"{path}: {key} has shape {array.shape}: multi-label data is not supported, "
            "labels must be (N,) or (N, 1)"
        )
    if array.ndim not in (1, 2):
        raise DataError(f"{path}: {key} has shape {array.shape}; expected (N,) or (N, 1)")
    if not np.issubdtype(array.dtype, np.integer):
        raise DataError(f"{path}: {key} has dtype {array.dtype}; labels must be integers")
    return array.reshape(-1).astype(np.int64)


def read_npz(path: Path) -> RawData:
    """Read a MedMNIST-layout ``.npz`` (opened with ``allow_pickle=False``).

    Args:
        path: The ``.npz`` file.

    Returns:
        Images ``(N, C, H, W)`` as stored (uint8 for MedMNIST) in the file's train/val/test split,
        classes ``"0"`` .. ``"K-1"``.

    Raises:
        DataError: Not a zip archive, missing keys, object arrays, bad shapes or sizes.
    """
    if not path.is_file():
        raise DataError(f"data.path {path} is not an .npz file")
    with path.open("rb") as fh:
        if fh.read(4) != _ZIP_MAGIC:
            raise DataError(f"data file {path} is corrupt: not an .npz (zip) archive")
    parts = {}
    try:
        with np.load(path, allow_pickle=False) as archive:
            missing = [f"{s}_{k}" for s in SPLITS for k in ("images", "labels") if f"{s}_{k}" not in archive]
            if missing:
                raise DataError(f"{path} lacks {', '.join(missing)} (MedMNIST layout expected)")
            for split in SPLITS:
                images = _images(archive[f"{split}_images"], f"{split}_images", path)
                labels = _labels(archive[f"{split}_labels"], f"{split}_labels", path)
                if len(images) != len(labels):
                    raise DataError(
                        f"{path}: {split}_images holds {len(images)} images but "
                        f"{split}_labels {len(labels)} labels"
                    )
                parts[split] = (images, labels)
    except DataError:
        raise
    except ValueError as err:
        if "Object arrays cannot be loaded" in str(err):
            raise DataError(f"{path} holds a pickled object array; npz data must be plain arrays") from err
        raise DataError(f"data file {path} is corrupt: {err}") from err
    except (OSError, EOFError, zipfile.BadZipFile) as err:
        raise DataError(f"data file {path} is corrupt: {err}") from err
    shapes = {split: images.shape[1:] for split, (images, _) in parts.items()}
    if len(set(shapes.values())) > 1:
        raise DataError(f"{path}: image shapes differ between splits: {shapes}")
    classes = class_names_for([labels for _, labels in parts.values()], str(path))
    return RawData(classes, parts, str(path))
