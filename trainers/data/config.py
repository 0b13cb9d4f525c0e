"""Data configuration: which dataset, how it is split, resized and normalized."""

from __future__ import annotations

from dataclasses import dataclass

DATASETS = ("digits", "mnist-idx", "npz", "deeplense", "lens-sim")
NORMALIZATIONS = ("minmax", "meanstd")


@dataclass(frozen=True)
class DataConfig:
    """Where the images come from and how they become tensors.

    Args:
        name: ``digits`` (scikit-learn, offline), ``mnist-idx`` (IDX ``.gz`` files in ``path``),
            ``npz`` (MedMNIST layout file at ``path``), ``deeplense`` (class folders of ``.npy`` at
            ``path``) or ``lens-sim`` (simulated strong lensing, generated into a cache on first use).
        path: File or folder for the file-backed datasets.
        image_size: Resize images to this square size; ``None`` keeps the native size.
        normalize: ``minmax`` (each image to [0, 1], the seed's) or ``meanstd`` (dataset mean/std
            from the training split).
        val_fraction: Share of each class held out for validation when the source has no split.
        test_fraction: Share of each class held out for testing when the source has no split.
        split_seed: Seed of the deterministic stratified split.
        max_per_class: Keep at most this many images of each class (``None``: all).
        pretrain_classes: Class names whose training images feed pretraining (``None``: all classes).
        allow_pickle: Allow ``.npy`` object arrays (DeepLense axion files). Unpickling runs code from
            the file, so it is off unless the config opts in.
        per_class: ``lens-sim`` only: images simulated per class.
        sim_seed: ``lens-sim`` only: simulator seed.
    """

    name: str = "digits"
    path: str | None = None
    image_size: int | None = None
    normalize: str = "minmax"
    val_fraction: float = 0.15
    test_fraction: float = 0.15
    split_seed: int = 0
    max_per_class: int | None = None
    pretrain_classes: tuple[str, ...] | None = None
    allow_pickle: bool = False
    per_class: int = 1000
    sim_seed: int = 0

    def __post_init__(self) -> None:
        if self.name not in DATASETS:
            raise ValueError(f"data.name must be one of {DATASETS}, got {self.name!r}")
        if self.name in ("mnist-idx", "npz", "deeplense") and not self.path:
            raise ValueError(f"data.path is required for data.name={self.name!r}")
        if self.normalize not in NORMALIZATIONS:
            raise ValueError(f"data.normalize must be one of {NORMALIZATIONS}, got {self.normalize!r}")
        if self.image_size is not None and self.image_size < 1:
            raise ValueError(f"data.image_size must be >= 1, got {self.image_size}")
        if not (0 < self.val_fraction < 1 and 0 < self.test_fraction < 1
                and self.val_fraction + self.test_fraction < 1):
            raise ValueError(
                "data.val_fraction and data.test_fraction must be in (0, 1) and sum to less than 1, got "
                f"{self.val_fraction} and {self.test_fraction}"
            )
        if self.max_per_class is not None and self.max_per_class < 3:
            raise ValueError(f"data.max_per_class must be >= 3 (train, val, test), got {self.max_per_class}")
        if self.per_class < 3:
            raise ValueError(f"data.per_class must be >= 3, got {self.per_class}")
