"""Look at a data set: classes, counts, shape, dtype, pixel statistics, and a PNG grid of examples."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from maetune.trainers.data.config import DATASETS, DataConfig
from maetune.trainers.data.errors import DataError

SAMPLE_PER_CLASS = 500  # pixel statistics read at most this many files per class (evenly spaced)


@dataclass(frozen=True)
class Sample:
    """What ``describe`` and ``plot_examples`` read from a data set.

    Args:
        origin: The folder or data set name.
        classes: Class names in label order.
        counts: Number of images per class.
        dtype: Stored dtype of the images (``object`` for DeepLense (image, mass) files).
        images: Per class, an evenly spaced sample ``(n, H, W)`` or ``(n, C, H, W)`` as float64.
    """

    origin: str
    classes: tuple[str, ...]
    counts: dict[str, int]
    dtype: str
    images: dict[str, np.ndarray]


def _stored_dtype(path: Path) -> str:
    """The dtype in a ``.npy`` header, without loading (or unpickling) the array."""
    with path.open("rb") as fh:
        version = np.lib.format.read_magic(fh)
        read = (
            np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        )
        return str(read(fh)[2])


def _spaced(items: list, n: int) -> list:
    """At most ``n`` items evenly spaced over ``items``, first included."""
    if len(items) <= n:
        return items
    return [items[int(i)] for i in np.linspace(0, len(items) - 1, n).round()]


def _planes(images: np.ndarray) -> np.ndarray:
    """``(n, C, H, W)`` as float64, with a single channel squeezed to ``(n, H, W)``."""
    images = np.asarray(images, dtype=np.float64)
    return images[:, 0] if images.ndim == 4 and images.shape[1] == 1 else images


def _read_folder(root: Path, allow_pickle: bool, sample: int) -> Sample:
    from maetune.trainers.data.folders import list_class_files, read_npy_image

    classes, files = list_class_files(root)
    per_class = {name: [p for label, p in files if label == i] for i, name in enumerate(classes)}
    images = {
        name: _planes(
            np.stack([read_npy_image(p, allow_pickle=allow_pickle) for p in _spaced(paths, sample)])
        )
        for name, paths in per_class.items()
    }
    counts = {name: len(paths) for name, paths in per_class.items()}
    return Sample(str(root), classes, counts, _stored_dtype(files[0][1]), images)


def _read_named(name: str, sample: int) -> Sample:
    from maetune.trainers.data.sources import read_source

    raw = read_source(DataConfig(name=name))
    images = np.concatenate([x for x, _ in raw.parts.values()])  # (N, C, H, W)
    labels = np.concatenate([y for _, y in raw.parts.values()])
    by_class = {c: images[labels == i] for i, c in enumerate(raw.classes)}
    return Sample(
        raw.origin,
        raw.classes,
        {c: len(x) for c, x in by_class.items()},
        str(images.dtype),
        {c: _planes(np.stack(_spaced(list(x), sample))) for c, x in by_class.items()},
    )


def read_sample(target: str | Path, allow_pickle: bool = False, sample: int = SAMPLE_PER_CLASS) -> Sample:
    """Read a sample of ``target``: a folder of class folders, ``lens-sim`` (default cache set) or a name.

    Args:
        target: A DeepLense-layout folder, ``lens-sim``, or a data set name needing no path (``digits``).
        allow_pickle: Allow DeepLense object-array files (unpickling runs code from the file).
        sample: Files read per class for the statistics.

    Raises:
        DataError: ``target`` is neither an existing folder nor a known data set name, or cannot be read.
    """
    path = Path(target).expanduser()
    if path.is_dir():
        return _read_folder(path, allow_pickle, sample)
    if str(target) == "lens-sim":
        from maetune.trainers.data.lensing import ensure_lens_sim

        return _read_folder(ensure_lens_sim(DataConfig(name="lens-sim")), False, sample)
    if str(target) in DATASETS:
        try:
            return _read_named(str(target), sample)
        except DataError:
            raise
        except ValueError as err:  # e.g. a data set that needs a path
            raise DataError(f"cannot read data set {target!r} by name: {err}") from err
    raise DataError(
        f"{target} is neither a folder of class folders nor a data set name ({', '.join(DATASETS)})"
    )


def _pixel_stats(images: np.ndarray) -> dict[str, float]:
    return {
        "min": float(images.min()),
        "max": float(images.max()),
        "mean": float(images.mean()),
        "frac_below_0.1": float((images < 0.1).mean()),
    }


def describe(target: str | Path, allow_pickle: bool = False, sample: int = SAMPLE_PER_CLASS) -> dict:
    """Classes, counts, image shape and dtype, and pixel statistics of a data set.

    Pixel statistics are over an evenly spaced sample of at most ``sample`` images per class.

    Args:
        target: See ``read_sample``.
        allow_pickle: See ``read_sample``.
        sample: Images read per class.

    Returns:
        ``{"origin", "classes", "counts", "total", "shape", "dtype", "sampled", "pixels", "per_class"}``;
        ``pixels`` and each ``per_class[c]`` hold ``min``, ``max``, ``mean`` and ``frac_below_0.1``.
    """
    found = read_sample(target, allow_pickle, sample)
    everything = np.concatenate([x.reshape(len(x), -1) for x in found.images.values()])
    first = next(iter(found.images.values()))
    return {
        "origin": found.origin,
        "classes": list(found.classes),
        "counts": found.counts,
        "total": sum(found.counts.values()),
        "shape": list(first.shape[1:]),
        "dtype": found.dtype,
        "sampled": {c: len(x) for c, x in found.images.items()},
        "pixels": _pixel_stats(everything),
        "per_class": {c: _pixel_stats(x) for c, x in found.images.items()},
    }


def plot_examples(target: str | Path, out_png: Path, per_class: int = 4, allow_pickle: bool = False) -> Path:
    """Write a PNG grid: one row per class, ``per_class`` evenly spaced examples each.

    Args:
        target: See ``read_sample``.
        out_png: The PNG to write (folders created).
        per_class: Examples per class.
        allow_pickle: See ``read_sample``.

    Returns:
        ``out_png``.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    found = read_sample(target, allow_pickle, per_class)
    rows, cols = len(found.classes), per_class
    fig, axes = plt.subplots(rows, cols, figsize=(1.6 * cols, 1.7 * rows), squeeze=False)
    for r, name in enumerate(found.classes):
        for c in range(cols):
            ax = axes[r][c]
            ax.set_axis_off()
            if c < len(found.images[name]):
                image = found.images[name][c]
                ax.imshow(image if image.ndim == 2 else np.moveaxis(image, 0, -1), cmap="gray")
            if c == 0:
                ax.set_title(f"{name} ({found.counts[name]})", fontsize=8, loc="left")
    fig.tight_layout()
    out_png = Path(out_png)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_png, dpi=100)
    plt.close(fig)
    return out_png
