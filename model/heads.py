"""MLP classification head: the linear probe's adapter and the fine-tuned head."""

from __future__ import annotations

import torch
from torch import nn

from maetune.model.config import HeadConfig

LN_EPS = 1e-6


def make_norm(kind: str, dim: int, affine: bool = True) -> nn.Module:
    """Normalization layer by name.

    Args:
        kind: ``"layer"``, ``"batch"`` or ``"none"``.
        dim: Feature width.
        affine: Learnable scale and shift (used for BatchNorm only; MAE's probe input norm has none).

    Returns:
        ``LayerNorm``, ``BatchNorm1d`` or ``Identity``.
    """
    if kind == "layer":
        return nn.LayerNorm(dim, eps=LN_EPS)
    if kind == "batch":
        return nn.BatchNorm1d(dim, affine=affine, eps=LN_EPS)
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"unknown norm {kind!r}")


class MLPHead(nn.Module):
    """Input norm, ``depth - 1`` hidden layers ``[Linear, norm, GELU, Dropout]``, then a Linear.

    With ``depth == 1`` this is MAE's linear probe: an (optional) input norm and one Linear. The input
    norm is ``LayerNorm``, ``BatchNorm1d(affine=False)`` (MAE's probe) or nothing; hidden norms use the same
    kind, with affine BatchNorm.
    """

    def __init__(self, in_dim: int, num_classes: int, cfg: HeadConfig) -> None:
        """Build the head.

        Args:
            in_dim: Feature width D of the encoder.
            num_classes: Number of classes K.
            cfg: Depth, hidden width, dropout and norm kind.
        """
        super().__init__()
        self.cfg = cfg
        self.input_norm = make_norm(cfg.norm, in_dim, affine=False)
        layers: list[nn.Module] = []
        width = in_dim
        for _ in range(cfg.depth - 1):
            layers += [
                nn.Linear(width, cfg.width),
                make_norm(cfg.norm, cfg.width),
                nn.GELU(),
                nn.Dropout(cfg.dropout),
            ]
            width = cfg.width
        self.hidden = nn.Sequential(*layers)
        self.fc = nn.Linear(width, num_classes)
        self.init_weights()

    def init_weights(self) -> None:
        """Xavier hidden layers; last layer trunc-normal(0.01) weights and zero bias, like MAE's probe."""
        for m in self.hidden:
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)
        # Truncated at 2 std; torch's (and timm's) default bounds are +-2 absolute, i.e. no truncation.
        nn.init.trunc_normal_(self.fc.weight, std=0.01, a=-0.02, b=0.02)
        nn.init.zeros_(self.fc.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map features (B, D) to logits (B, K)."""
        x = self.hidden(self.input_norm(x))  # (B, W)
        return self.fc(x)  # (B, K)
