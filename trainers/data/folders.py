"""Class folders of ``.npy`` images (the DeepLense layout: ``no_sub/``, ``cdm/``, ``axion/``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from maetune.trainers.data.errors import DataError
from maetune.trainers.data.sources import RawData

_NPY_MAGIC = b"\x93NUMPY"


def read_npy_image(path: Path, *, allow_pickle: bool) -> np.ndarray:
    """Read one image: a ``(H, W)`` or ``(C, H, W)`` array, or a DeepLense ``(image, mass)`` object array.

    Args:
        path: The ``.npy`` file.
        allow_pickle: Unpickle object arrays (runs code from the file); otherwise refuse them.

    Returns:
        The image as ``(C, H, W)`` float32.

    Raises:
        DataError: Not a ``.npy``, truncated, an object array without ``allow_pickle``, a bad shape.
    """
    try:
        with path.open("rb") as fh:
            if fh.read(len(_NPY_MAGIC)) != _NPY_MAGIC:
                raise DataError(f"data file {path} is corrupt: no .npy header")
            fh.seek(0)
            array = np.lib.format.read_array(fh, allow_pickle=allow_pickle)
    except DataError:
        raise
    except ValueError as err:
        if "Object arrays cannot be loaded" in str(err):
            raise DataError(
                f"{path} holds a pickled object array; loading it runs code from the file: "
                "set data.allow_pickle: true only if you trust the source"
            ) from err
        raise DataError(f"data file {path} is corrupt: {err}") from err
    except Exception as err:  # unpickling a damaged file can raise nearly anything
        raise DataError(f"data file {path} is corrupt: {type(err).__name__}: {err}") from err
    if array.dtype == object:
        # DeepLense axion files: object array (image, axion mass); the image is element 0.
        if array.ndim != 1 or len(array) == 0 or not isinstance(array[0], np.ndarray):
            raise DataError(f"{path} holds an object array of shape {array.shape}; expected (image, mass)")
        array = array[0]
    if not np.issubdtype(array.dtype, np.number) or np.issubdtype(array.dtype, np.complexfloating):
        raise DataError(f"{path} holds a {array.dtype} array; images must be real numbers")
    if array.ndim == 2:
        array = array[None]  # (1, H, W)
    if array.ndim != 3:
        raise DataError(f"{path} holds an array of shape {array.shape}; expected (H, W) or (C, H, W)")
    image = array.astype(np.float32)
    if not np.isfinite(image).all():
        raise DataError(f"data file {path} holds non-finite pixel values (NaN or inf)")
    return image


def list_class_files(root: Path) -> tuple[tuple[str, ...], list[tuple[int, Path]]]:
    """Class names from sorted sub-folder names, and (label, file) pairs sorted by name within a class.

    Args:
        root: The folder holding one sub-folder per class (hidden folders are skipped).

    Raises:
        DataError: ``root`` is not a folder, has no class folders, or a class folder has no ``.npy``.
    """
    if not root.is_dir():
        raise DataError(f"data.path {root} is not a folder of class folders")
    # Sorted, never os.listdir order: the label of each class must not depend on the file system.
    classes = tuple(sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")))
    if not classes:
        raise DataError(f"data.path {root} holds no class folders")
    files = []
    for label, name in enumerate(classes):
        found = sorted((root / name).glob("*.npy"))
        if not found:
            raise DataError(f"class folder {root / name} holds no .npy files")
        files.extend((label, path) for path in found)
    return classes, files


def read_class_folders(root: Path, *, allow_pickle: bool) -> RawData:
    """Read every ``.npy`` image under ``root/<class>/``.

    Args:
        root: The folder of class folders.
        allow_pickle: Allow object-array files (DeepLense axion); see ``read_npy_image``.

    Returns:
        Unsplit images ``(N, C, H, W)`` float32 and labels; classes are the sorted folder names.

    Raises:
        DataError: Any unreadable file, or a file whose shape differs from the first one.
    """
    classes, files = list_class_files(root)
    first = read_npy_image(files[0][1], allow_pickle=allow_pickle)
    images = np.empty((len(files), *first.shape), dtype=np.float32)  # (N, C, H, W), filled in place
    labels = np.fromiter((label for label, _ in files), dtype=np.int64, count=len(files))
    images[0] = first
    for i, (_, path) in enumerate(files[1:], start=1):
        image = read_npy_image(path, allow_pickle=allow_pickle)
        if image.shape != first.shape:
            raise DataError(
                f"data file {path} has shape (C, H, W) = {image.shape} but {files[0][1]} has "
                f"{first.shape}: all images must match"
            )
        images[i] = image
    return RawData(classes, {"all": (images, labels)}, str(root))
