"""Model configuration: the encoder/decoder shape and the classification head.

Frozen dataclasses validated on construction, so an impossible model (a patch that does not
divide the image, heads that do not divide the width) is refused before any tensor exists.
"""

from __future__ import annotations

from dataclasses import dataclass

POOLS = ("cls", "avg")
LOSSES = ("bce", "mse", "mse_norm_pix")
NORMS = ("layer", "batch", "none")


@dataclass(frozen=True)
class ModelConfig:
    """Shape of the ViT encoder and the MAE decoder.

    Args:
        img_size: Side of the square input image in pixels.
        in_chans: Number of image channels.
        patch_size: Side of a square patch; must divide ``img_size``.
        embed_dim: Encoder width; must be divisible by ``num_heads``.
        depth: Number of encoder transformer blocks.
        num_heads: Encoder attention heads.
        mlp_ratio: Hidden width of each block's MLP as a multiple of the width.
        pool: ``"cls"`` (class token) or ``"avg"`` (mean over patch tokens) for the pooled feature.
        mask_ratio: Fraction of patches hidden from the encoder during pretraining, in [0, 1).
        decoder_embed_dim: Decoder width; must be divisible by ``decoder_num_heads``.
        decoder_depth: Number of decoder transformer blocks.
        decoder_num_heads: Decoder attention heads.
        loss: Reconstruction loss: ``"bce"`` (BCE-with-logits on targets in [0, 1], the seed's),
            ``"mse"`` or ``"mse_norm_pix"`` (MSE on per-patch normalized targets, MAE's).
    """

    img_size: int = 64
    in_chans: int = 1
    patch_size: int = 8
    embed_dim: int = 128
    depth: int = 4
    num_heads: int = 4
    mlp_ratio: float = 4.0
    pool: str = "cls"
    mask_ratio: float = 0.75
    decoder_embed_dim: int = 64
    decoder_depth: int = 2
    decoder_num_heads: int = 4
    loss: str = "bce"

    def __post_init__(self) -> None:
        for name in (
            "img_size",
            "in_chans",
            "patch_size",
            "embed_dim",
            "depth",
            "num_heads",
            "decoder_embed_dim",
            "decoder_depth",
            "decoder_num_heads",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"model.{name} must be >= 1, got {getattr(self, name)}")
        if self.img_size % self.patch_size:
            raise ValueError(
                f"model.patch_size={self.patch_size} does not divide the image size {self.img_size}"
            )
        if self.embed_dim % self.num_heads:
            raise ValueError(
                f"model.embed_dim={self.embed_dim} is not divisible by model.num_heads={self.num_heads}"
            )
        if self.decoder_embed_dim % self.decoder_num_heads:
            raise ValueError(
                f"model.decoder_embed_dim={self.decoder_embed_dim} is not divisible by "
                f"model.decoder_num_heads={self.decoder_num_heads}"
            )
        if not 0.0 <= self.mask_ratio < 1.0:
            raise ValueError(f"model.mask_ratio must be in [0, 1), got {self.mask_ratio}")
        if self.mlp_ratio <= 0:
            raise ValueError(f"model.mlp_ratio must be > 0, got {self.mlp_ratio}")
        if self.pool not in POOLS:
            raise ValueError(f"model.pool must be one of {POOLS}, got {self.pool!r}")
        if self.loss not in LOSSES:
            raise ValueError(f"model.loss must be one of {LOSSES}, got {self.loss!r}")

    @property
    def grid_size(self) -> int:
        """Patches along one side of the image."""
        return self.img_size // self.patch_size

    @property
    def num_patches(self) -> int:
        """Patches per image, L."""
        return self.grid_size**2


@dataclass(frozen=True)
class HeadConfig:
    """The MLP classification head (the probe's adapter and the fine-tuned head).

    Args:
        depth: Number of linear layers; 1 is a plain linear classifier.
        width: Hidden width of every layer but the last.
        dropout: Dropout before each hidden linear layer's output activation.
        norm: Normalization of the head's input and hidden layers: ``"batch"`` (default: MAE's probe
            recipe; frozen features vary little across images and need batch statistics), ``"layer"``
            or ``"none"``.
    """

    depth: int = 2
    width: int = 256
    dropout: float = 0.0
    norm: str = "batch"

    def __post_init__(self) -> None:
        if self.depth < 1:
            raise ValueError(f"head.depth must be >= 1, got {self.depth}")
        if self.width < 1:
            raise ValueError(f"head.width must be >= 1, got {self.width}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"head.dropout must be in [0, 1), got {self.dropout}")
        if self.norm not in NORMS:
            raise ValueError(f"head.norm must be one of {NORMS}, got {self.norm!r}")
