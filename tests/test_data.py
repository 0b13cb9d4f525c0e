"""Data sets, splits, normalization and batching on the shared real data and on tmp_path fixtures."""

from __future__ import annotations

import gzip
import struct
import sys
import types
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from maetune.trainers.data import (
    DataBundle,
    DataConfig,
    DataError,
    augment_shift,
    iterate_batches,
    load_dataset,
    num_batches,
    shard_indices,
)
from maetune.trainers.data.folders import read_class_folders
from maetune.trainers.data.idx import read_mnist_idx
from maetune.trainers.data.sources import read_digits
from maetune.trainers.data.splits import stratified_split
from maetune.trainers.data.transforms import minmax

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
MNIST = SHARED / "mnist-t10k"
LENSES = SHARED / "deeplense-samples"
MNIST_TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


# ---------------------------------------------------------------- fixture writers


def write_idx(path: Path, array: np.ndarray, *, magic: int | None = None) -> None:
    """Write ``array`` (uint8) as a gzip IDX file; ``magic`` overrides the header's magic number."""
    magic = (0x0800 | array.ndim) if magic is None else magic
    header = struct.pack(">I", magic) + struct.pack(f">{array.ndim}I", *array.shape)
    path.write_bytes(gzip.compress(header + array.astype(np.uint8).tobytes()))


def lens_image(rng: np.random.Generator, label: int) -> np.ndarray:
    """A (64, 64) float64 image in [0, 1] whose mean depends on the class."""
    return np.clip(rng.random((64, 64)) * 0.2 + 0.2 * label, 0, 1)


def write_lenses(
    root: Path, per_class: int = 6, classes: tuple[str, ...] = ("no_sub", "cdm", "axion")
) -> Path:
    """A DeepLense-layout folder; ``axion`` files are (image, mass) object arrays like the real ones."""
    rng = np.random.default_rng(0)
    for name in classes:
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            image = lens_image(rng, sorted(classes).index(name))
            if name == "axion":
                pair = np.empty(2, dtype=object)
                pair[0], pair[1] = image, 1e-23
                np.save(root / name / f"{name}_{i}.npy", pair, allow_pickle=True)
            else:
                np.save(root / name / f"{name}_{i}.npy", image)
    return root


def write_npz(path: Path, *, rgb: bool, classes: int = 3) -> Path:
    """A MedMNIST-layout .npz: uint8 images, (N, 1) labels, its own train/val/test split."""
    rng = np.random.default_rng(1)
    arrays = {}
    for split, n in (("train", 30), ("val", 9), ("test", 12)):
        shape = (n, 12, 12, 3) if rgb else (n, 12, 12)
        arrays[f"{split}_images"] = rng.integers(0, 256, shape, dtype=np.uint8)
        arrays[f"{split}_labels"] = (np.arange(n) % classes).reshape(n, 1).astype(np.uint8)
    np.savez(path, **arrays)
    return path


# ---------------------------------------------------------------- real data


def test_mnist_t10k_header_and_counts() -> None:
    raw = read_mnist_idx(MNIST)
    images, labels = raw.parts["all"]
    assert images.shape == (10000, 1, 28, 28) and images.dtype == np.uint8
    assert raw.classes == tuple(str(i) for i in range(10))
    assert np.bincount(labels).tolist() == MNIST_TEST_COUNTS
    assert images.max() == 255 and images.min() == 0


def test_mnist_t10k_loads_split() -> None:
    bundle = load_dataset(DataConfig(name="mnist-idx", path=str(MNIST)))
    sizes = [len(bundle.y_train), len(bundle.y_val), len(bundle.y_test)]
    assert sum(sizes) == 10000 and sizes[1] == pytest.approx(1500, abs=10)
    assert (bundle.num_classes, bundle.in_chans, bundle.img_size) == (10, 1, 28)
    assert bundle.x_train.dtype == torch.float32 and bundle.y_train.dtype == torch.int64


def test_deeplense_samples_sorted_classes_and_shape() -> None:
    raw = read_class_folders(LENSES, allow_pickle=False)
    images, labels = raw.parts["all"]
    assert raw.classes == ("axion", "cdm", "no_sub")
    assert images.shape == (3, 1, 64, 64) and images.dtype == np.float32
    assert labels.tolist() == [0, 1, 2]


def test_deeplense_samples_too_few_to_split() -> None:
    with pytest.raises(DataError, match=r"class 'axion' .* only 1 image"):
        load_dataset(DataConfig(name="deeplense", path=str(LENSES)))


# ---------------------------------------------------------------- DeepLense-layout fixtures


def test_object_array_axion_refused_without_allow_pickle(tmp_path: Path) -> None:
    root = write_lenses(tmp_path / "lenses")
    with pytest.raises(DataError, match=r"axion_0\.npy holds a pickled object array.*allow_pickle: true"):
        load_dataset(DataConfig(name="deeplense", path=str(root)))


def test_object_array_axion_loaded_with_allow_pickle(tmp_path: Path) -> None:
    root = write_lenses(tmp_path / "lenses")
    bundle = load_dataset(
        DataConfig(name="deeplense", path=str(root), allow_pickle=True, normalize="meanstd")
    )
    assert bundle.classes == ("axion", "cdm", "no_sub")
    assert (bundle.in_chans, bundle.img_size) == (1, 64)
    assert len(bundle.y_train) + len(bundle.y_val) + len(bundle.y_test) == 18
    for y in (bundle.y_train, bundle.y_val, bundle.y_test):
        assert set(y.tolist()) == {0, 1, 2}


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_corrupt_npy_names_the_file(tmp_path: Path, damage: str) -> None:
    root = write_lenses(tmp_path / "lenses", classes=("cdm", "no_sub"))
    bad = root / "cdm" / "cdm_3.npy"
    data = bad.read_bytes()
    bad.write_bytes(b"not a numpy file at all" if damage == "garbage" else data[: len(data) // 2])
    with pytest.raises(DataError, match=rf"{bad} is corrupt"):
        load_dataset(DataConfig(name="deeplense", path=str(root)))


def test_inconsistent_shape_names_the_file(tmp_path: Path) -> None:
    root = write_lenses(tmp_path / "lenses", classes=("cdm", "no_sub"))
    np.save(root / "no_sub" / "no_sub_9.npy", np.zeros((32, 32)))
    with pytest.raises(DataError, match=r"no_sub_9\.npy has shape"):
        load_dataset(DataConfig(name="deeplense", path=str(root)))


def test_non_finite_pixels_refused(tmp_path: Path) -> None:
    root = write_lenses(tmp_path / "lenses", classes=("cdm", "no_sub"))
    image = np.zeros((64, 64))
    image[3, 3] = np.nan
    np.save(root / "cdm" / "cdm_0.npy", image)
    with pytest.raises(DataError, match=r"cdm_0\.npy holds non-finite"):
        load_dataset(DataConfig(name="deeplense", path=str(root)))


def test_missing_path_and_one_class(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=rf"data.path {tmp_path / 'nope'} does not exist"):
        load_dataset(DataConfig(name="deeplense", path=str(tmp_path / "nope")))
    root = write_lenses(tmp_path / "lenses", classes=("no_sub",))
    with pytest.raises(DataError, match=r"only one class \('no_sub'\)"):
        load_dataset(DataConfig(name="deeplense", path=str(root)))


def test_lens_sim_reads_the_simulator_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = write_lenses(tmp_path / "sim", classes=("cdm", "no_sub"))
    fake = types.ModuleType("maetune.trainers.data.lensing")
    fake.ensure_lens_sim = lambda cfg: root  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "maetune.trainers.data.lensing", fake)
    bundle = load_dataset(DataConfig(name="lens-sim"))
    assert bundle.classes == ("cdm", "no_sub")


def test_pretrain_images_restricts_to_named_classes(tmp_path: Path) -> None:
    root = write_lenses(tmp_path / "lenses", classes=("cdm", "no_sub"))
    cfg = DataConfig(name="deeplense", path=str(root), pretrain_classes=("no_sub",))
    bundle = load_dataset(cfg)
    only = bundle.pretrain_images()
    assert len(only) == int((bundle.y_train == 1).sum()) > 0
    assert torch.equal(only, bundle.x_train[bundle.y_train == 1])
    with pytest.raises(DataError, match=r"unknown class\(es\) \['axion'\]; available: \['cdm', 'no_sub'\]"):
        load_dataset(replace(cfg, pretrain_classes=("axion",)))


# ---------------------------------------------------------------- npz and IDX fixtures


@pytest.mark.parametrize("rgb", [False, True])
def test_npz_keeps_its_split(tmp_path: Path, rgb: bool) -> None:
    path = write_npz(tmp_path / "med.npz", rgb=rgb)
    bundle = load_dataset(DataConfig(name="npz", path=str(path)))
    assert [len(bundle.y_train), len(bundle.y_val), len(bundle.y_test)] == [30, 9, 12]
    assert bundle.classes == ("0", "1", "2")
    assert tuple(bundle.x_train.shape[1:]) == ((3, 12, 12) if rgb else (1, 12, 12))
    with np.load(path) as archive:
        first = torch.from_numpy(archive["train_images"][0]).float()
    first = first.permute(2, 0, 1) if rgb else first[None]
    expected = (first - first.min()) / (first.max() - first.min())
    torch.testing.assert_close(bundle.x_train[0], expected)


def test_npz_not_a_zip(tmp_path: Path) -> None:
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"garbage")
    with pytest.raises(DataError, match=rf"{bad} is corrupt"):
        load_dataset(DataConfig(name="npz", path=str(bad)))


def test_idx_wrong_magic(tmp_path: Path) -> None:
    write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", np.zeros((4, 5, 5)), magic=0x12340803)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", np.zeros(4))
    with pytest.raises(DataError, match=r"t10k-images-idx3-ubyte\.gz has bad magic number 0x12340803"):
        load_dataset(DataConfig(name="mnist-idx", path=str(tmp_path)))


def test_idx_size_mismatch(tmp_path: Path) -> None:
    path = tmp_path / "t10k-labels-idx1-ubyte.gz"
    path.write_bytes(gzip.compress(struct.pack(">II", 0x0801, 10) + bytes(7)))
    write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", np.zeros((10, 5, 5)))
    with pytest.raises(DataError, match=r"labels-idx1-ubyte\.gz is corrupt: header says shape \(10,\)"):
        load_dataset(DataConfig(name="mnist-idx", path=str(tmp_path)))


def test_idx_train_and_t10k(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    for prefix, n in (("train", 40), ("t10k", 10)):
        write_idx(tmp_path / f"{prefix}-images-idx3-ubyte.gz", rng.integers(0, 256, (n, 6, 6)))
        write_idx(tmp_path / f"{prefix}-labels-idx1-ubyte.gz", np.arange(n) % 2)
    bundle = load_dataset(DataConfig(name="mnist-idx", path=str(tmp_path)))
    assert len(bundle.y_test) == 10
    assert len(bundle.y_train) + len(bundle.y_val) == 40 and len(bundle.y_val) == 6


# ---------------------------------------------------------------- splits and transforms (digits)


@pytest.fixture(scope="module")
def digits() -> DataBundle:
    return load_dataset(DataConfig(name="digits"))


def test_split_deterministic_seeded_stratified(digits: DataBundle) -> None:
    again = load_dataset(DataConfig(name="digits"))
    assert torch.equal(digits.x_train, again.x_train) and torch.equal(digits.y_test, again.y_test)
    other = load_dataset(DataConfig(name="digits", split_seed=1))
    assert not torch.equal(digits.x_train, other.x_train)
    counts = [torch.bincount(y, minlength=10) for y in (digits.y_train, digits.y_val, digits.y_test)]
    assert all(bool((c > 0).all()) for c in counts)
    assert sum(int(c.sum()) for c in counts) == 1797
    total = sum(counts)
    assert torch.allclose(counts[2].float(), 0.15 * total.float(), atol=1)


def test_split_disjoint_and_covers_everything() -> None:
    labels = read_digits().parts["all"][1]
    parts = stratified_split(labels, (0.15, 0.15), 0, classes=[str(i) for i in range(10)], origin="digits")
    joined = np.concatenate(parts)
    assert len(joined) == len(labels) == len(np.unique(joined))
    assert all(set(labels[p].tolist()) == set(range(10)) for p in parts)


def test_max_per_class(digits: DataBundle) -> None:
    small = load_dataset(DataConfig(name="digits", max_per_class=20))
    counts = sum(torch.bincount(y, minlength=10) for y in (small.y_train, small.y_val, small.y_test))
    assert counts.tolist() == [20] * 10
    assert torch.equal(small.x_test, load_dataset(DataConfig(name="digits", max_per_class=20)).x_test)


def test_minmax_range_and_constant_image(digits: DataBundle) -> None:
    for x in (digits.x_train, digits.x_val, digits.x_test):
        assert x.min() >= 0 and x.max() <= 1
    assert torch.allclose(digits.x_train.amax(dim=(1, 2, 3)), torch.ones(len(digits.x_train)))
    assert torch.equal(minmax(torch.full((2, 1, 4, 4), 7.0)), torch.zeros(2, 1, 4, 4))


def test_meanstd_uses_train_stats() -> None:
    bundle = load_dataset(DataConfig(name="digits", normalize="meanstd"))
    assert abs(float(bundle.x_train.mean())) < 1e-4
    assert float(bundle.x_train.std()) == pytest.approx(1.0, abs=1e-3)
    assert abs(float(bundle.x_test.mean())) > 1e-4  # test images shifted by train stats, not their own


def test_resize() -> None:
    bundle = load_dataset(DataConfig(name="digits", image_size=16))
    assert tuple(bundle.x_train.shape[1:]) == (1, 16, 16) and bundle.img_size == 16
    assert bundle.x_train.min() >= 0 and bundle.x_train.max() <= 1


# ---------------------------------------------------------------- batching and augmentation


def _epoch(rank: int, world_size: int, seed: int = 3, **kw: object) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return list(iterate_batches(103, 8, shuffle=True, generator=gen, rank=rank, world_size=world_size, **kw))


def test_iterate_batches_sharded_equal_disjoint_deterministic() -> None:
    ranks = [_epoch(r, 4) for r in range(4)]
    assert {len(b) for b in ranks} == {num_batches(103, 8, world_size=4)} == {4}
    seen = torch.cat([torch.cat(b) for b in ranks])
    assert len(seen) == 100 == len(torch.unique(seen))  # 103 // 4 * 4: the tail of 3 is dropped
    assert all(torch.equal(a, b) for a, b in zip(_epoch(1, 4), ranks[1], strict=True))
    assert not all(torch.equal(a, b) for a, b in zip(_epoch(1, 4, seed=4), ranks[1], strict=True))
    dropped = _epoch(0, 4, drop_last=True)
    assert len(dropped) == 3 and all(len(b) == 8 for b in dropped)


def test_iterate_batches_single_rank_covers_all() -> None:
    batches = list(iterate_batches(10, 4, shuffle=False, generator=None))
    assert [b.tolist() for b in batches] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    with pytest.raises(ValueError, match="generator"):
        list(iterate_batches(10, 4, shuffle=True, generator=None, rank=0, world_size=2))


def test_shard_indices_cover_once() -> None:
    shards = [shard_indices(10, r, 3) for r in range(3)]
    assert shards[0].tolist() == [0, 3, 6, 9]
    assert sorted(torch.cat(shards).tolist()) == list(range(10))


def test_augment_shift_keeps_shape_and_mass() -> None:
    gen = torch.Generator().manual_seed(0)
    x = torch.zeros(64, 2, 16, 16)
    x[:, :, 4:12, 4:12] = torch.rand(64, 2, 8, 8, generator=gen)  # zero border of 4 >= max_shift
    out = augment_shift(x, 3, torch.Generator().manual_seed(1))
    assert out.shape == x.shape
    torch.testing.assert_close(out.sum(dim=(1, 2, 3)), x.sum(dim=(1, 2, 3)))
    assert not torch.equal(out, x)
    assert torch.equal(out, augment_shift(x, 3, torch.Generator().manual_seed(1)))
    # Each sample is an integer translation of its input, the same for every channel.
    shifted = [
        any(
            torch.equal(out[i], torch.roll(x[i], (dy, dx), (1, 2)))
            for dy in range(-3, 4)
            for dx in range(-3, 4)
        )
        for i in range(8)
    ]
    assert all(shifted)
    assert augment_shift(x, 0, gen) is x
