"""The DeepLense-style strong-lensing simulator: write class folders of ``.npy`` images, resumably.

``simulate`` writes ``no_sub/``, ``cdm/``, ``axion/`` with one ``(S, S)`` float64 image in [0, 1] per
file and a ``metadata.json`` (seed, priors, and the drawn physical values of every image).
``ensure_lens_sim`` does the same into a cache keyed by its parameters and reuses it. The physics lives in
``lensing_params`` (priors, draws), ``lensing_cosmology`` and ``lensing_imaging`` (rendering, noise).

Each image has its own generator, seeded from (seed, class, index) through ``numpy.random.SeedSequence``,
so a set is byte-identical whatever the number of workers and however often it was interrupted.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict
from pathlib import Path

import numpy as np

from maetune.trainers.data.config import DataConfig
from maetune.trainers.data.errors import DataError
from maetune.trainers.data.lensing_cache import cache_root, locked
from maetune.trainers.data.lensing_imaging import (
    noise_sigma,
    render_image,
    render_pair,
    substructure_sigma,
    warm_up,
)
from maetune.trainers.data.lensing_params import CLASSES, PRIORS, SIM_VERSION, LensDraw, draw_lens
from maetune.trainers.data.lensing_pool import run_tasks

__all__ = [
    "CLASSES",
    "draw_image",
    "ensure_lens_sim",
    "noise_sigma",
    "render_pair",
    "simulate",
    "substructure_sigma",
]

METADATA = "metadata.json"
_TMP_MARK = ".tmp-"
_HEADER_READERS = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}


def usable_cores() -> int:
    """CPU cores this process may run on (the affinity mask where the platform has one)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def draw_image(seed: int, kind: str, index: int) -> tuple[LensDraw, np.random.Generator]:
    """The draw of image ``index`` of class ``kind``, and its generator (next used for the noise).

    Args:
        seed: Global simulator seed.
        kind: One of ``CLASSES``.
        index: Image index within the class.

    Returns:
        ``(draw, rng)``: ``render_image(draw, rng)`` is then exactly the image ``simulate`` writes.
    """
    rng = np.random.default_rng(np.random.SeedSequence([seed, CLASSES.index(kind), index]))
    return draw_lens(rng, kind), rng


def file_name(kind: str, index: int) -> str:
    """The file name of image ``index`` of class ``kind``, relative to the set's root."""
    return f"{kind}/{kind}_{index:06d}.npy"


def _is_valid(path: Path, image_size: int, deeplense_format: bool) -> bool:
    """Whether ``path`` holds a complete image of the expected shape.

    Object (DeepLense-format) files are judged by their header only, so nothing is unpickled; files are
    only ever renamed into place whole, so a header means a complete file unless something else wrote it.
    """
    try:
        with path.open("rb") as fh:
            version = np.lib.format.read_magic(fh)
            read_header = _HEADER_READERS.get(version)
            if read_header is None:
                return False
            shape, _, dtype = read_header(fh)  # the header only: nothing is unpickled
            if dtype.hasobject:
                return deeplense_format and shape == (2,)
            body = path.stat().st_size - fh.tell()
        return (
            shape == (image_size, image_size)
            and dtype == np.float64
            and body == dtype.itemsize * image_size**2
        )
    except (OSError, ValueError):
        return False


def _write_atomic(path: Path, array: np.ndarray, allow_pickle: bool = False) -> None:
    """Write ``array`` to a temp file beside ``path`` and rename it over, so no reader sees half a file."""
    tmp = path.with_name(f".{path.name}{_TMP_MARK}{os.getpid()}")
    with tmp.open("wb") as fh:  # a file object: np.save would append ".npy" to a plain name
        np.save(fh, array, allow_pickle=allow_pickle)
    os.replace(tmp, path)


def _make_one(task: tuple[str, int, int, int, bool, str]) -> dict:
    """Render and write one image unless a valid file is already there; return its metadata record."""
    root, seed, index, image_size, deeplense_format, kind = task
    draw, rng = draw_image(seed, kind, index)
    name = file_name(kind, index)
    path = Path(root) / name
    if not _is_valid(path, image_size, deeplense_format):
        image = render_image(draw, rng, image_size)  # (S, S) float64 in [0, 1]
        if deeplense_format and kind == "axion":
            packed = np.empty(2, dtype=object)  # DeepLense: (image, axion mass)
            packed[0], packed[1] = image, draw.axion_mass
            _write_atomic(path, packed, allow_pickle=True)
        else:
            _write_atomic(path, image)
    return {"file": name, "index": index, **draw.record()}


def _settings(per_class: int, seed: int, image_size: int, deeplense_format: bool) -> dict:
    """What identifies a simulated set (compared on resume)."""
    return {
        "simulator": "maetune.lens-sim",
        "version": SIM_VERSION,
        "seed": seed,
        "per_class": per_class,
        "image_size": image_size,
        "deeplense_format": deeplense_format,
        "classes": list(CLASSES),
        "pixel_scale_arcsec": PRIORS.field_of_view / image_size,
        "priors": asdict(PRIORS),
    }


def _write_json(path: Path, payload: dict) -> None:
    tmp = path.with_name(f".{path.name}{_TMP_MARK}{os.getpid()}")
    tmp.write_text(json.dumps(payload, indent=1))
    os.replace(tmp, path)


def _prepare(out: Path, settings: dict) -> None:
    """Create the folders, refuse a folder made with other settings, drop temp files of killed runs."""
    meta = out / METADATA
    if meta.exists():
        try:
            old = json.loads(meta.read_text())
        except (OSError, ValueError) as err:
            raise DataError(f"{meta} is unreadable ({err}); remove it or use another output folder") from err
        wanted = json.loads(json.dumps(settings))  # tuples become lists, as in the file
        differ = sorted(key for key, value in wanted.items() if old.get(key) != value)
        if differ:
            raise DataError(
                f"{out} holds a simulated set with other settings ({', '.join(differ)}); "
                "use another output folder"
            )
    elif out.exists() and any(out.iterdir()):
        raise DataError(f"{out} is not empty and holds no {METADATA}: refusing to write a data set into it")
    out.mkdir(parents=True, exist_ok=True)
    _write_json(meta, {**settings, "complete": False})  # first: a killed run leaves a resumable folder
    for kind in CLASSES:
        (out / kind).mkdir(parents=True, exist_ok=True)
        for stale in (out / kind).glob(f".*{_TMP_MARK}*"):
            stale.unlink(missing_ok=True)


def simulate(
    out: Path,
    per_class: int,
    seed: int = 0,
    image_size: int = 64,
    workers: int = 0,
    deeplense_format: bool = False,
    progress: bool = True,
) -> Path:
    """Simulate ``per_class`` lensing images of each class into ``out`` (DeepLense layout), resumably.

    Files already there and complete are kept (they are the same bytes a rerun would write), so an
    interrupted run continues where it stopped. ``metadata.json`` is rewritten at the end with
    ``"complete": true`` and one record per image.

    Args:
        out: Output folder (created; must be empty or a set simulated with the same settings).
        per_class: Images per class.
        seed: Global seed; image i of class c uses ``SeedSequence([seed, c, i])``.
        image_size: Pixels per side; the field of view stays 6.4 arcsec (64 px: Euclid's 0.1"/px).
        workers: Processes (0: all cores).
        deeplense_format: Write ``axion`` files as DeepLense does: an object array (image, axion mass),
            which needs ``allow_pickle`` to load. Default: plain float64 arrays.
        progress: Show a progress bar.

    Returns:
        ``out``.

    Raises:
        DataError: Bad arguments, or ``out`` holds something else.
    """
    if per_class < 1 or image_size < 8 or seed < 0 or workers < 0:
        raise DataError(
            f"lens-sim needs per_class >= 1, image_size >= 8, seed >= 0, workers >= 0; got "
            f"per_class={per_class}, image_size={image_size}, seed={seed}, workers={workers}"
        )
    out = Path(out).expanduser()
    settings = _settings(per_class, seed, image_size, deeplense_format)
    _prepare(out, settings)
    tasks = [
        (str(out), seed, i, image_size, deeplense_format, kind) for kind in CLASSES for i in range(per_class)
    ]
    warm_up(image_size)  # here, once: forked workers inherit the imports and caches
    records = run_tasks(_make_one, tasks, workers or usable_cores(), progress, "simulating lenses")
    by_class = {kind: [r for r in records if r["kind"] == kind] for kind in CLASSES}
    _write_json(out / METADATA, {**settings, "complete": True, "records": by_class})
    return out


def is_complete(out: Path, per_class: int, seed: int, image_size: int) -> bool:
    """Whether ``out`` holds a finished set with exactly these settings (plain format)."""
    try:
        meta = json.loads((out / METADATA).read_text())
    except (OSError, ValueError):
        return False
    wanted = json.loads(json.dumps(_settings(per_class, seed, image_size, False)))
    if not meta.get("complete") or any(meta.get(k) != v for k, v in wanted.items()):
        return False
    return all(len(list((out / kind).glob("*.npy"))) == per_class for kind in CLASSES)


def cache_key(per_class: int, seed: int, image_size: int) -> str:
    """The cache folder name of a set: everything that changes its bytes (version and priors included)."""
    priors = hashlib.sha256(json.dumps(asdict(PRIORS), sort_keys=True).encode()).hexdigest()[:8]
    return f"v{SIM_VERSION}-{priors}-n{per_class}-seed{seed}-px{image_size}"


NATIVE_SIZE = 64  # DeepLense's image size; resizing happens in the loader


def ensure_lens_sim(cfg: DataConfig, progress: bool = True) -> Path:
    """The cached ``lens-sim`` set for ``cfg``, simulated on first use.

    The cache is ``$MAETUNE_CACHE/lens-sim/<key>`` (default ``~/.cache/maetune``). A file lock makes a
    second process wait for the first one's set instead of writing the same files at the same time.

    Args:
        cfg: Data config: ``per_class`` and ``sim_seed`` are used. The set is always simulated at
            DeepLense's native 64x64 (its field of view and pixel scale); ``data.image_size`` resizes
            the images after loading, like any other source.
        progress: Show a progress bar while simulating.

    Returns:
        The folder of class folders.
    """
    image_size = NATIVE_SIZE
    folder = cache_root() / "lens-sim" / cache_key(cfg.per_class, cfg.sim_seed, image_size)
    if is_complete(folder, cfg.per_class, cfg.sim_seed, image_size):
        return folder
    with locked(folder.with_name(folder.name + ".lock")):
        if not is_complete(folder, cfg.per_class, cfg.sim_seed, image_size):
            simulate(folder, cfg.per_class, cfg.sim_seed, image_size, progress=progress)
    return folder
