"""Classifier: a ViT encoder's pooled features into an MLP head."""

from __future__ import annotations

import torch
from torch import nn

from maetune.model.config import HeadConfig, ModelConfig
from maetune.model.heads import MLPHead
from maetune.model.vit import VisionTransformer


class Classifier(nn.Module):
    """``head(encoder(x))``; the probe freezes ``encoder``, fine-tuning trains both.

    Attributes:
        encoder: The ViT encoder (typically the pretrained MAE's).
        head: The MLP head.
    """

    def __init__(self, encoder: VisionTransformer, head: MLPHead) -> None:
        """Join an encoder and a head.

        Args:
            encoder: ViT encoder producing (B, D) pooled features.
            head: Head taking (B, D) features to (B, K) logits.
        """
        super().__init__()
        self.encoder = encoder
        self.head = head

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled encoder features (B, D) of images (B, C, H, W)."""
        return self.encoder(x)  # (B, D)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class logits (B, K) of images (B, C, H, W)."""
        return self.head(self.forward_features(x))  # (B, K)

    def no_weight_decay(self) -> set[str]:
        """The encoder's weight-decay exemptions, with this module's name prefix."""
        return {f"encoder.{n}" for n in self.encoder.no_weight_decay()}


def build_classifier(
    cfg: ModelConfig, head_cfg: HeadConfig, num_classes: int, encoder: VisionTransformer | None = None
) -> Classifier:
    """Build a classifier, reusing ``encoder`` (e.g. the pretrained MAE's) or a fresh one.

    Args:
        cfg: Model shape of the encoder.
        head_cfg: Head shape.
        num_classes: Number of classes K.
        encoder: Encoder to reuse; its width must equal ``cfg.embed_dim``.

    Returns:
        The classifier.
    """
    if encoder is None:
        encoder = VisionTransformer(cfg)
    elif encoder.embed_dim != cfg.embed_dim:
        raise ValueError(f"encoder width {encoder.embed_dim} does not match model.embed_dim={cfg.embed_dim}")
    return Classifier(encoder, MLPHead(cfg.embed_dim, num_classes, head_cfg))
