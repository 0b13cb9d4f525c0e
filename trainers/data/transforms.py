"""Whole-tensor image transforms: resize and normalization."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def resize(x: Tensor, size: int) -> Tensor:
    """Resize ``(N, C, H, W)`` images to ``(N, C, size, size)`` (bilinear, antialiased); no-op if equal."""
    if x.shape[-2:] == (size, size):
        return x
    return F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)


def minmax(x: Tensor) -> Tensor:
    """Scale each image (over all its channels) to [0, 1]; a constant image becomes zeros."""
    if x.numel() == 0:
        return x
    low = x.amin(dim=(1, 2, 3), keepdim=True)  # (N, 1, 1, 1)
    span = x.amax(dim=(1, 2, 3), keepdim=True) - low
    return (x - low) / torch.where(span > 0, span, torch.ones_like(span))


def channel_stats(x: Tensor) -> tuple[Tensor, Tensor]:
    """Per-channel mean and std of ``(N, C, H, W)`` images, shaped ``(1, C, 1, 1)``; std 0 becomes 1."""
    mean = x.mean(dim=(0, 2, 3), keepdim=True)  # (1, C, 1, 1)
    std = x.std(dim=(0, 2, 3), keepdim=True)
    return mean, torch.where(std > 0, std, torch.ones_like(std))


def standardize(x: Tensor, mean: Tensor, std: Tensor) -> Tensor:
    """Apply ``(x - mean) / std`` with stats from ``channel_stats`` (of the training split)."""
    return (x - mean) / std
