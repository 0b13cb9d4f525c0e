"""Where a stage runs: one process, or one rank of a torch.distributed group.

Stages talk only to a `Runtime`: which rank am I, wrap this model for data parallelism, gather
these predictions, report this epoch. `LocalRuntime` runs in-process (tests, debugging);
`DistributedRuntime` works in any initialized process group; the Ray Train adapter subclasses it
to route `report` through `ray.train.report`. Stages never import Ray.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

ReportFn = Callable[[dict[str, Any], dict[str, Any] | None], None]


class Runtime:
    """A single-process runtime; subclasses add distribution. Also the interface stages use.

    Args:
        device: Torch device to train on.
        bf16: Use bf16 autocast (only takes effect on CUDA).
        on_report: Called with (metrics, checkpoint_state) for every epoch report.
        verbose: Print progress lines (rank 0 only).
    """

    rank: int = 0
    world_size: int = 1

    def __init__(
        self,
        device: torch.device | str = "cpu",
        bf16: bool = True,
        on_report: ReportFn | None = None,
        verbose: bool = True,
    ) -> None:
        self.device = torch.device(device)
        self.bf16 = bf16 and self.device.type == "cuda"
        self.on_report = on_report
        self.verbose = verbose
        self.history: list[dict[str, Any]] = []

    @property
    def is_main(self) -> bool:
        """True on rank 0, which logs and writes checkpoints."""
        return self.rank == 0

    def wrap(self, model: nn.Module) -> nn.Module:
        """Wrap a model for data-parallel training (identity on one process)."""
        return model

    def autocast(self) -> contextlib.AbstractContextManager:
        """bf16 autocast on CUDA when enabled, a no-op otherwise."""
        if self.bf16:
            return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def all_mean(self, total: float, count: float) -> float:
        """Global mean of a quantity given this rank's sum and count."""
        return total / max(count, 1e-12)

    def gather(self, *arrays: np.ndarray) -> tuple[np.ndarray, ...]:
        """Concatenate per-rank arrays (same leading length per call) from all ranks, in rank order."""
        return arrays

    def broadcast_object(self, obj: Any) -> Any:
        """Rank 0's object, on every rank."""
        return obj

    def report(self, metrics: dict[str, Any], state: dict[str, Any] | None = None) -> None:
        """Record one epoch's metrics (and a checkpoint state) on every rank; a barrier when distributed."""
        self.history.append(dict(metrics))
        if self.on_report is not None:
            self.on_report(metrics, state if self.is_main else None)

    def checkpoint(self) -> dict[str, Any] | None:
        """The state of the last reported checkpoint of an earlier attempt, if resuming."""
        return None

    def log(self, message: str) -> None:
        """Print a progress line on rank 0."""
        if self.verbose and self.is_main:
            print(message, file=sys.stderr, flush=True)


class DistributedRuntime(Runtime):
    """One rank of an initialized ``torch.distributed`` process group (gloo on CPU, NCCL on GPU)."""

    def __init__(self, device: torch.device | str, **kwargs: Any) -> None:
        super().__init__(device, **kwargs)
        if not dist.is_available() or not dist.is_initialized():
            raise RuntimeError("DistributedRuntime needs an initialized torch.distributed process group")
        self.rank = dist.get_rank()
        self.world_size = dist.get_world_size()

    def wrap(self, model: nn.Module) -> nn.Module:
        if self.world_size == 1:
            return model
        ids = [self.device.index] if self.device.type == "cuda" else None
        return nn.parallel.DistributedDataParallel(model, device_ids=ids)

    def all_mean(self, total: float, count: float) -> float:
        t = torch.tensor([total, count], dtype=torch.float64, device=self._comm_device)
        dist.all_reduce(t)
        return float(t[0] / t[1].clamp_min(1e-12))

    def gather(self, *arrays: np.ndarray) -> tuple[np.ndarray, ...]:
        parts: list[Any] = [None] * self.world_size
        dist.all_gather_object(parts, arrays)
        return tuple(np.concatenate([p[i] for p in parts]) for i in range(len(arrays)))

    def broadcast_object(self, obj: Any) -> Any:
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    @property
    def _comm_device(self) -> torch.device:
        return self.device if dist.get_backend() == "nccl" else torch.device("cpu")


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Put a model in eval mode and no-grad for the block, restoring its training flag after."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            yield model
    finally:
        model.train(was_training)
