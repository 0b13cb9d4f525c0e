"""A shared cache of pretrained MAE weights, keyed by everything that determines them.

Trials that share the encoder shape, masking ratio, pretraining settings, data and seed would
pretrain the very same weights; the first one trains and stores them, later ones (concurrent,
or in a resumed search) load them. An exclusive file lock per key is held from the cache miss
until the weights are stored, so a concurrent trial with the same key waits instead of training
twice; if the trainer dies, the operating system releases the lock.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
from pathlib import Path
from typing import IO, Any

import torch

from maetune.trainers.config import RunConfig, to_dict

CACHE_VERSION = 1


def pretrain_key(cfg: RunConfig) -> str:
    """A stable hash of the settings that determine the pretrained weights."""
    ingredients = {
        "version": CACHE_VERSION,
        "model": to_dict(cfg.model),
        "pretrain": to_dict(cfg.pretrain),
        "data": to_dict(cfg.data),
        "seed": cfg.seed,
        "num_workers": cfg.train.num_workers,  # DDP sharding changes the batches each weight update sees
    }
    blob = json.dumps(ingredients, sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:20]


class PretrainedCache:
    """Pretrained MAE states stored as ``<dir>/<key>.pt``.

    Args:
        root: Cache folder (shared storage on a multi-node cluster).
    """

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root)
        self._locks: dict[str, IO[Any]] = {}

    def path(self, cfg: RunConfig) -> Path:
        """Where the weights for ``cfg`` live."""
        return self.root / f"{pretrain_key(cfg)}.pt"

    def load(self, cfg: RunConfig) -> dict[str, Any] | None:
        """The stored pretraining for ``cfg`` (``state``, ``history``, ``metrics``), or None after taking
        the key's lock (call `store` or `release` next)."""
        self.root.mkdir(parents=True, exist_ok=True)
        key = pretrain_key(cfg)
        lock = open(self.root / f"{key}.lock", "w")  # noqa: SIM115 - held until store()
        fcntl.flock(lock, fcntl.LOCK_EX)
        target = self.path(cfg)
        if target.exists():
            fcntl.flock(lock, fcntl.LOCK_UN)
            lock.close()
            return torch.load(target, map_location="cpu", weights_only=False)
        self._locks[key] = lock
        return None

    def store(self, cfg: RunConfig, state: dict[str, Any]) -> None:
        """Write a pretraining record atomically and release the key's lock."""
        target = self.path(cfg)
        tmp = target.with_suffix(f".tmp{os.getpid()}")
        torch.save(state, tmp)
        os.replace(tmp, target)
        self.release(cfg)

    def release(self, cfg: RunConfig) -> None:
        """Release the key's lock if this process holds it."""
        lock = self._locks.pop(pretrain_key(cfg), None)
        if lock is not None:
            fcntl.flock(lock, fcntl.LOCK_UN)
            lock.close()

    def hooks(self) -> tuple:
        """The (load, store) pair `run_pipeline` takes."""
        return (self.load, self.store)
