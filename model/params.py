"""Parameter accounting: counted from built modules, or estimated from the config alone.

The four numbers, same keys everywhere:

- ``encoder_params``: the ViT encoder (patch embedding, class token, blocks, final norm);
- ``decoder_params``: the MAE decoder (everything in the MAE that is not the encoder);
- ``head_params``: the MLP head;
- ``total_params``: encoder + head, the deployed classifier. The decoder is excluded: it is thrown away
  after pretraining.

Fixed sin-cos position embeddings and BatchNorm running statistics are buffers, not parameters, and are
not counted.
"""

from __future__ import annotations

from torch import nn

from maetune.model.config import HeadConfig, ModelConfig
from maetune.model.heads import MLPHead
from maetune.model.mae import MaskedAutoencoder

PARAM_KEYS = ("encoder_params", "decoder_params", "head_params", "total_params")


def count_params(module: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameter elements in ``module``.

    Args:
        module: Any module.
        trainable_only: Count only parameters with ``requires_grad``.
    """
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)


def parameter_report(mae: MaskedAutoencoder, head: MLPHead) -> dict[str, int]:
    """The four counts (see the module docstring) of a pretraining model and a head.

    Args:
        mae: The masked autoencoder; its ``encoder`` is the classifier's encoder.
        head: The classification head.

    Returns:
        ``{"encoder_params", "decoder_params", "head_params", "total_params"}``.
    """
    encoder = count_params(mae.encoder)
    head_n = count_params(head)
    return {
        "encoder_params": encoder,
        "decoder_params": count_params(mae) - encoder,
        "head_params": head_n,
        "total_params": encoder + head_n,
    }


def block_params(dim: int, mlp_ratio: float) -> int:
    """Parameters of one transformer block of width ``dim``.

    Two LayerNorms (2 * 2D), qkv (3D^2 + 3D), proj (D^2 + D), fc1 (D*H + H), fc2 (H*D + D),
    with H = int(D * mlp_ratio).
    """
    hidden = int(dim * mlp_ratio)
    return 4 * dim + (3 * dim * dim + 3 * dim) + (dim * dim + dim) + 2 * dim * hidden + hidden + dim


def _norm_params(kind: str, dim: int, affine: bool = True) -> int:
    """Parameters of `heads.make_norm` (LayerNorm always affine, BatchNorm by ``affine``)."""
    if kind == "layer" or (kind == "batch" and affine):
        return 2 * dim
    return 0


def estimate_params(cfg: ModelConfig, head_cfg: HeadConfig, num_classes: int) -> dict[str, int]:
    """The four counts computed from the configs, without building a model (cheap budget checks).

    Args:
        cfg: Encoder and decoder shape.
        head_cfg: Head shape.
        num_classes: Number of classes K.

    Returns:
        Same keys and values as `parameter_report` on the built models.
    """
    d, dd = cfg.embed_dim, cfg.decoder_embed_dim
    patch_dim = cfg.patch_size**2 * cfg.in_chans
    encoder = (
        (patch_dim * d + d)  # patch embedding (conv as a Linear)
        + d  # class token
        + cfg.depth * block_params(d, cfg.mlp_ratio)
        + 2 * d  # final norm
    )
    decoder = (
        (d * dd + dd)  # decoder_embed
        + dd  # mask token
        + cfg.decoder_depth * block_params(dd, cfg.mlp_ratio)
        + 2 * dd  # decoder norm
        + (dd * patch_dim + patch_dim)  # decoder_pred
    )
    head = _norm_params(head_cfg.norm, d, affine=False)
    width = d
    for _ in range(head_cfg.depth - 1):
        head += width * head_cfg.width + head_cfg.width + _norm_params(head_cfg.norm, head_cfg.width)
        width = head_cfg.width
    head += width * num_classes + num_classes
    return {
        "encoder_params": encoder,
        "decoder_params": decoder,
        "head_params": head,
        "total_params": encoder + head,
    }
