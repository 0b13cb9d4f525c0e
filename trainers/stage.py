"""What every stage shares: its output record, seeding, batch sizes, and sharded evaluation."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from maetune.trainers.data import iterate_batches, shard_indices
from maetune.trainers.metrics import classification_metrics, softmax
from maetune.trainers.optim import set_lr
from maetune.trainers.runtime import Runtime, eval_mode


@dataclass
class StageOutput:
    """The result of one stage.

    Attributes:
        metrics: Final metrics (computed with the best-on-validation weights).
        history: One metrics dict per epoch.
        state: Best-on-validation weights of what the stage trained (CPU tensors).
        artifacts: Arrays for plots (reconstructions, test probabilities and labels, ...).
        seconds: Wall time of the stage.
    """

    metrics: dict[str, float]
    history: list[dict[str, Any]] = field(default_factory=list)
    state: dict[str, Any] = field(default_factory=dict)
    artifacts: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch, so a stage is deterministic for a fixed seed."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def make_generator(seed: int, device: torch.device) -> torch.Generator:
    """A torch generator on ``device`` seeded with ``seed``."""
    g = torch.Generator(device=device)
    g.manual_seed(seed)
    return g


def per_rank_batch(global_batch: int, n: int, rt: Runtime) -> int:
    """Per-worker batch size: the global batch split across workers, capped so one step fits the data."""
    per_rank = max(1, global_batch // rt.world_size)
    return max(1, min(per_rank, n // rt.world_size))


def cpu_state(module: nn.Module) -> dict[str, torch.Tensor]:
    """A detached CPU copy of a module's state dict."""
    return {k: v.detach().to("cpu", copy=True) for k, v in module.state_dict().items()}


def predict(
    forward: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    rt: Runtime,
    batch_size: int = 512,
) -> np.ndarray:
    """Logits for every row of ``x``, each rank computing its shard, gathered back in the original order.

    Args:
        forward: Maps an input batch (on the runtime device) to outputs.
        x: Inputs for the whole split (any device).
        rt: The runtime.
        batch_size: Evaluation batch per rank.
    """
    idx = shard_indices(len(x), rt.rank, rt.world_size)
    outs = []
    for start in range(0, len(idx), batch_size):
        xb = x[idx[start : start + batch_size]].to(rt.device, non_blocking=True)
        with rt.autocast():
            outs.append(forward(xb).float().cpu())
    local = torch.cat(outs).numpy() if outs else np.zeros((0, 0), dtype=np.float32)
    order, values = rt.gather(idx.numpy(), local)
    result = np.empty_like(values)
    result[order] = values
    return result


def evaluate(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, rt: Runtime, num_classes: int
) -> tuple[dict, np.ndarray]:
    """Classification metrics of ``model`` on one split, plus the split's class probabilities (N, K)."""
    with eval_mode(model):
        logits = predict(model, x, rt)
    probs = softmax(logits.astype(np.float64))
    return classification_metrics(probs, y.numpy(), num_classes), probs


@torch.no_grad()
def refresh_batchnorm(model: nn.Module, x: torch.Tensor, rt: Runtime, max_images: int = 2048) -> None:
    """Recompute BatchNorm running statistics exactly on (up to ``max_images``) training inputs.

    The running averages lag when the features drift fast, as they do while the encoder fine-tunes
    (and frozen features vary little across images, so a small lag is a large error); evaluating
    with such stale statistics can cost tens of points of accuracy. Every rank uses the same images,
    so all ranks end with identical statistics.
    """
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return
    momenta = [m.momentum for m in norms]
    was_training = model.training
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over the refresh batches
    model.train()
    for start in range(0, min(len(x), max_images), 512):
        with rt.autocast():
            model(x[start : min(start + 512, max_images)].to(rt.device))
    for m, mom in zip(norms, momenta, strict=True):
        m.momentum = mom
    model.train(was_training)


def train_epoch(
    model: nn.Module,
    opt: torch.optim.Optimizer,
    n: int,
    batch: int,
    order_seed: int,
    rt: Runtime,
    lr_at: Callable[[int], float],
    step: int,
    loss_of: Callable[[torch.Tensor], torch.Tensor],
) -> tuple[float, int]:
    """One pass over ``n`` training rows, each rank on its equal shard of a seeded permutation.

    Args:
        model: The (possibly DDP-wrapped) model, put in train mode.
        opt: Its optimizer; every group's lr is set per step through `set_lr`.
        n: Training rows.
        batch: Per-rank batch size (the tail that does not fill a global batch is dropped).
        order_seed: Seed of this epoch's permutation (the same on every rank).
        rt: The runtime.
        lr_at: Learning rate at a global step.
        step: Global step at the start of the epoch.
        loss_of: Loss of one batch, given its row indices on the runtime device; called under autocast.

    Returns:
        The global mean training loss of the epoch and the global step after it.
    """
    order_gen = make_generator(order_seed, torch.device("cpu"))
    total_loss, seen = 0.0, 0
    model.train()
    for idx in iterate_batches(
        n, batch, shuffle=True, generator=order_gen, rank=rt.rank, world_size=rt.world_size, drop_last=True
    ):
        set_lr(opt, lr_at(step))
        idx = idx.to(rt.device)
        with rt.autocast():
            loss = loss_of(idx)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        total_loss += float(loss.detach()) * len(idx)
        seen += len(idx)
        step += 1
    return rt.all_mean(total_loss, seen), step


class Stopwatch:
    """Seconds since construction, for progress lines."""

    def __init__(self) -> None:
        self.start = time.perf_counter()

    def __call__(self) -> float:
        return time.perf_counter() - self.start
