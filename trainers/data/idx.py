"""MNIST-style IDX files (``*-idx3-ubyte.gz`` images, ``*-idx1-ubyte.gz`` labels), parsed with numpy."""

from __future__ import annotations

import gzip
import math
import struct
import zlib
from pathlib import Path

import numpy as np

from maetune.trainers.data.errors import DataError
from maetune.trainers.data.sources import RawData, class_names_for

# IDX type codes (third magic byte) -> big-endian numpy dtype.
_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def parse_idx(data: bytes, path: Path) -> np.ndarray:
    """Parse the bytes of one IDX file.

    The header is a magic number ``0x00 0x00 <type code> <ndim>`` then ``ndim`` big-endian uint32 sizes;
    the body must hold exactly ``prod(sizes)`` items.

    Args:
        data: The (decompressed) file contents.
        path: The file, for error messages.

    Returns:
        The array with the header's shape, in native byte order.

    Raises:
        DataError: Bad magic number, truncated header or a body of the wrong size.
    """
    if len(data) < 4:
        raise DataError(f"IDX file {path} is corrupt: {len(data)} bytes is shorter than the 4-byte magic")
    magic = int.from_bytes(data[:4], "big")
    code, ndim = data[2], data[3]
    if data[0] != 0 or data[1] != 0 or code not in _IDX_DTYPES or ndim == 0:
        raise DataError(f"IDX file {path} has bad magic number 0x{magic:08x}: not an IDX file")
    header_len = 4 + 4 * ndim
    if len(data) < header_len:
        raise DataError(f"IDX file {path} is corrupt: header truncated ({len(data)} of {header_len} bytes)")
    dims = struct.unpack(f">{ndim}I", data[4:header_len])
    dtype = np.dtype(_IDX_DTYPES[code])
    expected = math.prod(dims) * dtype.itemsize
    if len(data) - header_len != expected:
        raise DataError(
            f"IDX file {path} is corrupt: header says shape {dims} ({expected} bytes) "
            f"but the file holds {len(data) - header_len} bytes of data"
        )
    return np.frombuffer(data, dtype=dtype, offset=header_len).reshape(dims).astype(dtype.newbyteorder("="))


def read_idx_file(path: Path) -> np.ndarray:
    """Read one IDX file, gzip-compressed if its name ends in ``.gz``."""
    try:
        data = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError, zlib.error) as err:
        raise DataError(f"IDX file {path} is corrupt: cannot decompress ({err})") from err
    return parse_idx(data, path)


def _find(folder: Path, stem: str) -> Path | None:
    """The ``stem.gz`` or plain ``stem`` file in ``folder``, if any."""
    for name in (f"{stem}.gz", stem):
        if (folder / name).is_file():
            return folder / name
    return None


def _read_pair(folder: Path, prefix: str) -> tuple[np.ndarray, np.ndarray] | None:
    """Images ``(N, 1, H, W)`` and int64 labels of the ``prefix`` files, or None if there are none."""
    images_path = _find(folder, f"{prefix}-images-idx3-ubyte")
    labels_path = _find(folder, f"{prefix}-labels-idx1-ubyte")
    if images_path is None and labels_path is None:
        return None
    if images_path is None or labels_path is None:
        missing = (
            f"{prefix}-images-idx3-ubyte.gz" if images_path is None else f"{prefix}-labels-idx1-ubyte.gz"
        )
        raise DataError(f"data.path {folder} lacks {missing}")
    images = read_idx_file(images_path)
    labels = read_idx_file(labels_path)
    if images.ndim != 3:
        raise DataError(f"IDX file {images_path} holds a {images.ndim}-d array: images must be (N, H, W)")
    if labels.ndim != 1:
        raise DataError(f"IDX file {labels_path} holds a {labels.ndim}-d array: labels must be (N,)")
    if len(images) != len(labels):
        raise DataError(
            f"IDX files {images_path} and {labels_path} disagree: {len(images)} images, {len(labels)} labels"
        )
    return images[:, None], labels.astype(np.int64)  # (N, 1, H, W), (N,)


def read_mnist_idx(folder: Path) -> RawData:
    """Read a folder of MNIST IDX files.

    With both ``train-*`` and ``t10k-*`` files, train is the train (+ validation) source and t10k the
    test split; with only one pair, that pair is split by the loader.

    Args:
        folder: The folder holding the files.

    Returns:
        Images ``(N, 1, H, W)`` as stored (uint8 for MNIST), classes ``"0"`` .. ``"K-1"``.

    Raises:
        DataError: No IDX files, a missing half of a pair, or a corrupt file.
    """
    if not folder.is_dir():
        raise DataError(f"data.path {folder} is not a folder of IDX files")
    train, test = _read_pair(folder, "train"), _read_pair(folder, "t10k")
    if train is None and test is None:
        raise DataError(
            f"data.path {folder} holds no t10k-images-idx3-ubyte.gz or train-images-idx3-ubyte.gz"
        )
    if train is not None and test is not None:
        if train[0].shape[1:] != test[0].shape[1:]:
            raise DataError(
                f"IDX images in {folder} differ in size: train {train[0].shape[2:]}, t10k {test[0].shape[2:]}"
            )
        parts = {"train": train, "test": test}
    else:
        parts = {"all": train if train is not None else test}
    classes = class_names_for([labels for _, labels in parts.values()], str(folder))
    return RawData(classes, parts, str(folder))
