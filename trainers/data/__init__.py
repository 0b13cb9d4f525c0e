"""Data sets, splits and batching: pure torch/numpy, no Ray or MLflow."""

from maetune.trainers.data.batches import augment_shift, iterate_batches, num_batches, shard_indices
from maetune.trainers.data.config import DataConfig
from maetune.trainers.data.dataset import DataBundle, load_dataset
from maetune.trainers.data.errors import DataError

__all__ = [
    "DataBundle",
    "DataConfig",
    "DataError",
    "augment_shift",
    "iterate_batches",
    "load_dataset",
    "num_batches",
    "shard_indices",
]
