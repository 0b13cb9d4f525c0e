"""The lensing simulator against the three real DeepLense samples; its signal, determinism, resumability."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import ks_2samp

from maetune.trainers.data.config import DataConfig
from maetune.trainers.data.errors import DataError
from maetune.trainers.data.lensing import (
    CLASSES,
    cache_key,
    draw_image,
    ensure_lens_sim,
    simulate,
    substructure_sigma,
)
from maetune.trainers.data.lensing_imaging import render_image

REAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "deeplense-samples"


def ring_radius(image: np.ndarray) -> int:
    """Radius in pixels of the peak of the radial profile about the image centre."""
    y, x = np.indices(image.shape)
    centre = (np.array(image.shape) - 1) / 2
    bins = np.floor(np.hypot(y - centre[0], x - centre[1]) + 0.5).astype(int)
    profile = np.bincount(bins.ravel(), image.ravel()) / np.maximum(np.bincount(bins.ravel()), 1)
    return int(profile.argmax())


def load_real() -> dict[str, np.ndarray]:
    images = {}
    for kind in CLASSES:
        (path,) = sorted((REAL / kind).glob("*.npy"))
        # Our own trusted shared sample; a DeepLense axion file would be (image, mass).
        array = np.load(path, allow_pickle=True)
        images[kind] = array[0] if array.dtype == object else array
    return images


def sample_images(kind: str, n: int, seed: int = 0) -> list[np.ndarray]:
    """``n`` simulated images of ``kind``, rendered in this process (no files)."""
    out = []
    for i in range(n):
        draw, rng = draw_image(seed, kind, i)
        out.append(render_image(draw, rng))
    return out


@pytest.fixture(scope="module")
def real() -> dict[str, np.ndarray]:
    return load_real()


@pytest.fixture(scope="module")
def small_set(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return simulate(tmp_path_factory.mktemp("sim") / "set", 8, seed=3, workers=1, progress=False)


def files_of(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*.npy"))}


def test_images_look_like_the_real_samples(small_set: Path, real: dict[str, np.ndarray]) -> None:
    real_frac = [float((x < 0.1).mean()) for x in real.values()]
    real_rings = [ring_radius(x) for x in real.values()]
    images = [np.load(p) for p in sorted(small_set.rglob("*.npy"))]
    assert len(images) == 3 * 8
    for image in images:
        assert image.shape == (64, 64) and image.dtype == np.float64
        assert image.min() == 0.0 and image.max() == 1.0
    fracs = np.array([(x < 0.1).mean() for x in images])
    assert abs(fracs.mean() - np.mean(real_frac)) < 0.03  # real: ~0.862
    assert np.all(np.abs(fracs - np.mean(real_frac)) < 0.10)
    rings = np.array([ring_radius(x) for x in images])
    assert min(real_rings) - 1 <= np.median(rings) <= max(real_rings) + 1  # real: 10-11 px
    assert np.all((rings >= min(real_rings) - 3) & (rings <= max(real_rings) + 3))


def test_metadata_records_the_drawn_physics(small_set: Path) -> None:
    meta = json.loads((small_set / "metadata.json").read_text())
    assert meta["complete"] and meta["seed"] == 3 and meta["per_class"] == 8
    assert meta["priors"]["log10_subhalo_mass"] == [9.3, 10.7]
    cdm = meta["records"]["cdm"]
    assert [r["file"] for r in cdm] == [f"cdm/cdm_{i:06d}.npy" for i in range(8)]
    assert all(r["n_subhalos"] == len(r["subhalo_masses"]) for r in cdm)
    assert sum(r["n_subhalos"] for r in cdm) > 0
    axion = meta["records"]["axion"]
    assert all(1e-24 < r["axion_mass"] < 1e-22 and r["vortex_length"] > 0 for r in axion)
    assert all(0.9 < r["theta_e"] < 1.2 for rs in meta["records"].values() for r in rs)


@pytest.mark.parametrize("kind", ["cdm", "axion"])
def test_substructure_stands_several_sigma_above_the_noise(kind: str) -> None:
    sigmas = [substructure_sigma(draw_image(0, kind, i)[0]) for i in range(8)]
    assert np.median(sigmas) >= 3.0, sigmas
    assert substructure_sigma(draw_image(0, "no_sub", 0)[0]) == 0.0


def test_classes_share_brightness_and_ring_radius() -> None:
    # No shortcut: the main lens and source priors are shared, and the smooth halo gives up the
    # substructure mass inside theta_E, so brightness and ring size alone cannot tell the classes apart.
    stats = {}
    for kind in CLASSES:
        images = sample_images(kind, 40, seed=1)
        stats[kind] = ([x.mean() for x in images], [ring_radius(x) for x in images])
    for kind in ("cdm", "axion"):
        for which in (0, 1):
            assert ks_2samp(stats["no_sub"][which], stats[kind][which]).pvalue > 0.01, (kind, which)


def test_same_seed_same_bytes_whatever_the_workers(tmp_path: Path) -> None:
    one = simulate(tmp_path / "one", 4, seed=11, workers=1, progress=False)
    two = simulate(tmp_path / "two", 4, seed=11, workers=2, progress=False)
    assert files_of(one) == files_of(two) and len(files_of(one)) == 12
    meta = [json.loads((p / "metadata.json").read_text())["records"] for p in (one, two)]
    assert meta[0] == meta[1]
    other = simulate(tmp_path / "other", 4, seed=12, workers=1, progress=False)
    assert files_of(other) != files_of(one)


_KILLABLE = (
    "import sys; from pathlib import Path; from maetune.trainers.data.lensing import simulate; "
    "simulate(Path(sys.argv[1]), int(sys.argv[2]), seed=5, workers=1, progress=False)"
)


def test_killed_run_resumes_to_a_complete_valid_set(tmp_path: Path) -> None:
    out, per_class = tmp_path / "set", 150
    proc = subprocess.Popen([sys.executable, "-c", _KILLABLE, str(out), str(per_class)])
    deadline = time.monotonic() + 60
    while len(list(out.rglob("*.npy"))) < 20 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    written = len(list(out.rglob("*.npy")))
    assert 0 < written < 3 * per_class, "the run must be killed mid-way"
    assert not json.loads((out / "metadata.json").read_text())["complete"]
    # What a crash can leave: a temp file, and (from elsewhere) a truncated image.
    (out / "no_sub" / f".no_sub_000001.npy.tmp-{proc.pid}").write_bytes(b"\x93NUMPY half")
    first = out / "no_sub" / "no_sub_000000.npy"
    first.write_bytes(first.read_bytes()[:100])
    simulate(out, per_class, seed=5, workers=2, progress=False)
    assert not [p for p in out.rglob("*") if ".tmp-" in p.name]
    for kind in CLASSES:
        paths = sorted((out / kind).glob("*.npy"))
        assert len(paths) == per_class
        for path in paths:
            image = np.load(path)
            assert image.shape == (64, 64) and np.isfinite(image).all()
    meta = json.loads((out / "metadata.json").read_text())
    assert meta["complete"] and all(len(meta["records"][k]) == per_class for k in CLASSES)
    for index in (0, 7, per_class - 1):  # identical to an uninterrupted run
        draw, rng = draw_image(5, "no_sub", index)
        assert np.array_equal(np.load(out / "no_sub" / f"no_sub_{index:06d}.npy"), render_image(draw, rng))


def test_a_folder_of_other_settings_is_refused(small_set: Path, tmp_path: Path) -> None:
    with pytest.raises(DataError, match="other settings"):
        simulate(small_set, 8, seed=4, workers=1, progress=False)
    (tmp_path / "stuff.txt").write_text("x")
    with pytest.raises(DataError, match="not empty"):
        simulate(tmp_path, 3, workers=1, progress=False)


def test_deeplense_format_writes_axion_as_image_and_mass(tmp_path: Path) -> None:
    from maetune.trainers.data.folders import read_class_folders

    out = simulate(tmp_path / "dl", 3, seed=2, workers=1, deeplense_format=True, progress=False)
    meta = json.loads((out / "metadata.json").read_text())
    for i, path in enumerate(sorted((out / "axion").glob("*.npy"))):
        with pytest.raises(ValueError):
            np.load(path)  # pickled: refused without the opt-in
        packed = np.load(path, allow_pickle=True)
        assert packed.dtype == object and packed.shape == (2,)
        assert packed[0].shape == (64, 64) and packed[0].dtype == np.float64
        assert packed[1] == meta["records"]["axion"][i]["axion_mass"]
    assert np.load(out / "cdm" / "cdm_000000.npy").dtype == np.float64
    with pytest.raises(DataError, match="allow_pickle"):
        read_class_folders(out, allow_pickle=False)
    raw = read_class_folders(out, allow_pickle=True)
    assert raw.parts["all"][0].shape == (9, 1, 64, 64)
    assert read_class_folders(
        simulate(tmp_path / "plain", 3, seed=2, workers=1, progress=False), allow_pickle=False
    ).classes == ("axion", "cdm", "no_sub")


def test_ensure_lens_sim_caches_by_parameters(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAETUNE_CACHE", str(tmp_path / "cache"))
    cfg = DataConfig(name="lens-sim", per_class=3, sim_seed=9, image_size=32)
    folder = ensure_lens_sim(cfg, progress=False)
    # always simulated at DeepLense's 64x64 (same field of view); data.image_size resizes on loading
    assert folder == tmp_path / "cache" / "lens-sim" / cache_key(3, 9, 64)
    assert np.load(folder / "cdm" / "cdm_000002.npy").shape == (64, 64)
    stamp = (folder / "metadata.json").stat().st_mtime_ns
    assert ensure_lens_sim(cfg, progress=False) == folder
    assert (folder / "metadata.json").stat().st_mtime_ns == stamp  # reused, not regenerated
    other = ensure_lens_sim(
        DataConfig(name="lens-sim", per_class=3, sim_seed=10, image_size=32), progress=False
    )
    assert other != folder
