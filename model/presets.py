"""The seed study's three encoder variants as named model presets (64x64 single-channel images).

The seed fixed width, patch and mask ratio (128/8/0.3, 256/4/0.75, 300/4/0.75); it did not record depth,
heads or the decoder, so these are chosen here:

- depth: ViT-Tiny-like, 8 blocks at width 128 gives a ~1.6M encoder, the seed's "shallow, ~1.5M"
  encoder that with a deep ~0.5M head makes its ~2M fine-tuned model; the wider two use 6 blocks
  (4.7M and 6.5M encoders, the seed's "deep, heavier" side).
- heads: head width 32 at 128 and 256 (4 and 8 heads). 300 = 2^2 * 3 * 5^2 is not divisible by 8, so no
  head count gives a multiple-of-8 head width; 6 heads (width 50) is the closest to ViT's 64 and
  still divides 300 (4 heads would give 75, 10 heads 30).
- decoder: 128 wide, 4 blocks, 4 heads for all three (~0.8M, dropped after pretraining). MAE's ablation
  (Table 1a) shows linear-probe accuracy rising with decoder depth up to 8 while fine-tuning barely
  cares; 4 is the compromise at this scale, and one decoder makes pretraining losses comparable.
- loss: ``bce``, the seed's BCE-with-logits on min-max normalized images.
"""

from __future__ import annotations

from maetune.model.config import ModelConfig

_DECODER = {"decoder_embed_dim": 128, "decoder_depth": 4, "decoder_num_heads": 4}
_IMAGE = {"img_size": 64, "in_chans": 1, "loss": "bce", "pool": "cls"}

PRESETS: dict[str, ModelConfig] = {
    "seed-128": ModelConfig(
        embed_dim=128, patch_size=8, mask_ratio=0.3, depth=8, num_heads=4, **_IMAGE, **_DECODER
    ),
    "seed-256": ModelConfig(
        embed_dim=256, patch_size=4, mask_ratio=0.75, depth=6, num_heads=8, **_IMAGE, **_DECODER
    ),
    "seed-300": ModelConfig(
        embed_dim=300, patch_size=4, mask_ratio=0.75, depth=6, num_heads=6, **_IMAGE, **_DECODER
    ),
}


def get_preset(name: str) -> ModelConfig:
    """The model preset called ``name``.

    Args:
        name: One of ``PRESETS``.

    Raises:
        ValueError: For an unknown name, listing the known ones.
    """
    if name not in PRESETS:
        raise ValueError(f"unknown model preset {name!r}; choose one of {sorted(PRESETS)}")
    return PRESETS[name]
