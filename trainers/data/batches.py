"""Index batches (sharded across DDP ranks) and a batched random-shift augmentation."""

from __future__ import annotations

from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import Tensor


def _check_rank(rank: int, world_size: int) -> None:
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"need 0 <= rank < world_size, got rank={rank}, world_size={world_size}")


def num_batches(n: int, batch_size: int, *, world_size: int = 1, drop_last: bool = False) -> int:
    """How many batches ``iterate_batches`` yields on every rank.

    Args:
        n: Number of samples.
        batch_size: Samples per batch on each rank.
        world_size: Number of ranks.
        drop_last: Drop a final partial batch.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    per_rank = n // world_size
    return per_rank // batch_size if drop_last else -(-per_rank // batch_size)


def iterate_batches(
    n: int,
    batch_size: int,
    *,
    shuffle: bool,
    generator: torch.Generator | None,
    rank: int = 0,
    world_size: int = 1,
    drop_last: bool = False,
) -> Iterator[Tensor]:
    """Yield index batches of ``range(n)`` for one rank, for training.

    The (shuffled) permutation is cut into ``world_size`` disjoint, equal slices of ``n // world_size``
    indices: the last ``n % world_size`` indices of the permutation are dropped, so every rank yields the
    same number of batches. That matters because DDP's all-reduce and ``ray.train.report`` are barriers:
    a rank with one extra batch would hang the others. With shuffling the dropped tail differs each
    epoch. For evaluation, where nothing may be dropped, use ``shard_indices``.

    Args:
        n: Number of samples.
        batch_size: Samples per batch on this rank.
        shuffle: Shuffle the order (else ``0 .. n-1``).
        generator: Source of the shuffle. With several ranks it must be seeded the same on every rank
            (e.g. ``seed + epoch``), so they agree on the permutation.
        rank: This rank.
        world_size: Number of ranks.
        drop_last: Drop a final partial batch (same on every rank).

    Yields:
        Int64 index tensors of at most ``batch_size`` elements, on the generator's device.

    Raises:
        ValueError: Bad rank or batch size, or shuffling across ranks without a generator.
    """
    _check_rank(rank, world_size)
    count = num_batches(n, batch_size, world_size=world_size, drop_last=drop_last)
    if shuffle and world_size > 1 and generator is None:
        raise ValueError("shuffling across ranks needs a generator seeded the same on every rank")
    if shuffle:
        device = generator.device if generator is not None else "cpu"
        order = torch.randperm(n, generator=generator, device=device)
    else:
        order = torch.arange(n)
    per_rank = n // world_size
    mine = order[: per_rank * world_size].view(world_size, per_rank)[rank]  # (per_rank,)
    for i in range(count):
        yield mine[i * batch_size : (i + 1) * batch_size]


def shard_indices(n: int, rank: int, world_size: int) -> Tensor:
    """Indices ``rank, rank + world_size, ...`` of ``range(n)``, for evaluation.

    No padding and no duplicates: shards differ in length by at most one, together they cover every
    sample once, and the caller gathers the predictions of all ranks (padding to equal length for
    ``all_gather`` if it needs to).

    Args:
        n: Number of samples.
        rank: This rank.
        world_size: Number of ranks.
    """
    _check_rank(rank, world_size)
    return torch.arange(rank, n, world_size)


def augment_shift(x: Tensor, max_shift: int, generator: torch.Generator | None = None) -> Tensor:
    """Translate each image by its own random offset in ``[-max_shift, max_shift]`` pixels per axis.

    Zero-pads by ``max_shift`` and crops each sample at a random offset with one gather (no per-sample
    Python loop). Content moved past the edge is lost and the border fills with zeros.

    Args:
        x: Images ``(B, C, H, W)``.
        max_shift: Largest shift in pixels; 0 returns ``x`` unchanged.
        generator: Source of the offsets (``None``: torch's global generator).

    Returns:
        Shifted images, same shape, dtype and device as ``x``.
    """
    if max_shift < 0:
        raise ValueError(f"max_shift must be >= 0, got {max_shift}")
    if max_shift == 0 or x.numel() == 0:
        return x
    b, _, h, w = x.shape
    device = generator.device if generator is not None else x.device
    offsets = torch.randint(0, 2 * max_shift + 1, (b, 2), generator=generator, device=device).to(x.device)
    padded = F.pad(x, (max_shift,) * 4)  # (B, C, H + 2s, W + 2s)
    rows = offsets[:, :1] + torch.arange(h, device=x.device)  # (B, H)
    cols = offsets[:, 1:] + torch.arange(w, device=x.device)  # (B, W)
    batch = torch.arange(b, device=x.device)[:, None, None]  # (B, 1, 1)
    crop = padded.permute(0, 2, 3, 1)[batch, rows[:, :, None], cols[:, None, :]]  # (B, H, W, C)
    return crop.permute(0, 3, 1, 2).contiguous()  # (B, C, H, W)
