"""Optimizers and schedules: LARS for probing, AdamW parameter groups, per-step warmup + cosine.

LARS is written here rather than imported: timm's `Lars` would serve, but importing `timm.optim`
pulls in `timm.layers`, which needs torchvision, a large CUDA-coupled dependency this project does
not otherwise need. The implementation follows You et al. (2017) as MAE's linear probe uses it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
from torch import nn


def scaled_lr(base_lr: float, batch_size: int) -> float:
    """The linear scaling rule: lr = base_lr x batch / 256."""
    return base_lr * batch_size / 256


def warmup_cosine(step: int, total_steps: int, warmup_steps: int, peak: float, floor: float = 0.0) -> float:
    """Learning rate at a step: linear warmup to ``peak``, then half-cosine down to ``floor``.

    Args:
        step: Current optimizer step, starting at 0.
        total_steps: Steps in the whole stage.
        warmup_steps: Steps of linear warmup.
        peak: Learning rate at the end of warmup.
        floor: Learning rate at the last step.
    """
    if warmup_steps > 0 and step < warmup_steps:
        return peak * (step + 1) / warmup_steps
    span = max(1, total_steps - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / span)
    return floor + (peak - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Set every group's lr to ``lr`` times its ``lr_scale`` (1 if absent)."""
    for group in optimizer.param_groups:
        group["lr"] = lr * group.get("lr_scale", 1.0)


class LARS(torch.optim.Optimizer):
    """Layer-wise Adaptive Rate Scaling (SGD with momentum and a per-tensor trust ratio).

    Biases and 1-D parameters (norm weights) skip the trust ratio and weight decay, as in MAE.

    Args:
        params: Parameters or groups.
        lr: Learning rate.
        weight_decay: L2 penalty added to the gradient before the trust ratio.
        momentum: Momentum factor.
        trust_coefficient: Eta, scaling ||w|| / ||g||.
    """

    def __init__(
        self,
        params: Iterable[nn.Parameter] | Iterable[dict],
        lr: float = 0.1,
        weight_decay: float = 0.0,
        momentum: float = 0.9,
        trust_coefficient: float = 0.001,
    ) -> None:
        if lr < 0 or weight_decay < 0 or not 0 <= momentum < 1 or trust_coefficient <= 0:
            raise ValueError(
                "LARS needs lr >= 0, weight_decay >= 0, 0 <= momentum < 1, trust_coefficient > 0"
            )
        defaults = {
            "lr": lr,
            "weight_decay": weight_decay,
            "momentum": momentum,
            "trust_coefficient": trust_coefficient,
        }
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure=None):  # type: ignore[override]
        """Perform one optimization step."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                d_p = p.grad
                if p.ndim > 1:  # weights only: biases and norms keep the plain update
                    d_p = d_p.add(p, alpha=group["weight_decay"])
                    p_norm, g_norm = torch.norm(p), torch.norm(d_p)
                    trust = torch.where(
                        (p_norm > 0) & (g_norm > 0),
                        group["trust_coefficient"] * p_norm / g_norm,
                        torch.ones_like(p_norm),
                    )
                    d_p = d_p.mul(trust)
                state = self.state[p]
                if "mu" not in state:
                    state["mu"] = torch.clone(d_p).detach()
                else:
                    state["mu"].mul_(group["momentum"]).add_(d_p)
                p.add_(state["mu"], alpha=-group["lr"])
        return loss


def _decays(name: str, p: nn.Parameter, no_decay: set[str]) -> bool:
    return p.ndim > 1 and name not in no_decay and not name.endswith(".bias")


def weight_decay_groups(model: nn.Module, weight_decay: float, no_decay: Iterable[str] = ()) -> list[dict]:
    """Two parameter groups: with and without weight decay (norms, biases, tokens, ``no_decay``)."""
    skip = set(no_decay)
    decay, plain = [], []
    for name, p in model.named_parameters():
        if p.requires_grad:
            (decay if _decays(name, p, skip) else plain).append(p)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": plain, "weight_decay": 0.0},
    ]


def finetune_groups(
    encoder: nn.Module,
    head: nn.Module,
    *,
    encoder_lr: float,
    head_lr: float,
    weight_decay: float,
    layer_decay: float = 1.0,
) -> list[dict]:
    """AdamW groups with separate encoder and head learning rates and optional layer-wise decay.

    Each group carries ``lr_scale`` relative to ``head_lr`` so that one schedule drives them all
    (use `set_lr` with the head's scheduled lr). Encoder layer ``i`` of ``n`` gets
    ``encoder_lr / head_lr * layer_decay ** (n - i)``: the patch embedding decays most, the last block least.

    Args:
        encoder: The ViT encoder; must provide ``layer_id(name)``, ``num_layers`` and ``no_weight_decay()``.
        head: The classification head.
        encoder_lr: Encoder peak learning rate (already batch-scaled).
        head_lr: Head peak learning rate (already batch-scaled).
        weight_decay: Weight decay for weights (not norms, biases, tokens).
        layer_decay: Per-layer multiplicative lr decay (1.0 turns it off).
    """
    no_decay = set(encoder.no_weight_decay())
    n = encoder.num_layers
    groups: dict[tuple[int, bool], dict] = {}
    for name, p in encoder.named_parameters():
        if not p.requires_grad:
            continue
        layer = encoder.layer_id(name)
        decays = _decays(name, p, no_decay)
        group = groups.setdefault(
            (layer, decays),
            {
                "params": [],
                "weight_decay": weight_decay if decays else 0.0,
                "lr_scale": (encoder_lr / head_lr) * layer_decay ** (n - layer),
            },
        )
        group["params"].append(p)
    head_groups = weight_decay_groups(head, weight_decay)
    for g in head_groups:
        g["lr_scale"] = 1.0
    return [g for g in [*groups.values(), *head_groups] if g["params"]]
