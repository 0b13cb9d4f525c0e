"""Pure-torch models: ViT encoder, masked autoencoder, MLP heads, classifier, parameter accounting."""

from maetune.model.classifier import Classifier, build_classifier
from maetune.model.config import HeadConfig, ModelConfig
from maetune.model.heads import MLPHead
from maetune.model.mae import MaskedAutoencoder, patchify, sample_masking, unpatchify
from maetune.model.params import PARAM_KEYS, count_params, estimate_params, parameter_report
from maetune.model.presets import PRESETS, get_preset
from maetune.model.vit import Block, VisionTransformer, sincos_pos_embed_2d

__all__ = [
    "PARAM_KEYS",
    "PRESETS",
    "Block",
    "Classifier",
    "HeadConfig",
    "MLPHead",
    "MaskedAutoencoder",
    "ModelConfig",
    "VisionTransformer",
    "build_classifier",
    "count_params",
    "estimate_params",
    "get_preset",
    "parameter_report",
    "patchify",
    "sample_masking",
    "sincos_pos_embed_2d",
    "unpatchify",
]
