"""Encoder, head, classifier, parameter accounting, presets and config validation (tiny models)."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch

from maetune.model import (
    PARAM_KEYS,
    HeadConfig,
    MaskedAutoencoder,
    MLPHead,
    ModelConfig,
    VisionTransformer,
    build_classifier,
    count_params,
    estimate_params,
    get_preset,
    parameter_report,
)

TINY = ModelConfig(
    img_size=16, patch_size=4, embed_dim=16, depth=2, num_heads=2,
    decoder_embed_dim=8, decoder_depth=1, decoder_num_heads=2,
)  # fmt: skip


def test_vit_shapes_and_kept_tokens() -> None:
    enc = VisionTransformer(TINY)
    x = torch.randn(3, 1, 16, 16)
    assert enc.forward_features(x).shape == (3, 1 + 16, 16)
    assert enc(x).shape == (3, 16)
    ids_keep = torch.tensor([[0, 5, 7], [1, 2, 3], [15, 14, 0]])
    assert enc.forward_features(x, ids_keep).shape == (3, 1 + 3, 16)
    with pytest.raises(ValueError, match="16x16"):
        enc(torch.randn(1, 1, 20, 20))


def test_pos_embed_is_fixed_sincos_buffer() -> None:
    enc = VisionTransformer(TINY)
    names = {n for n, _ in enc.named_parameters()}
    assert "pos_embed" not in names and not enc.pos_embed.requires_grad
    assert "pos_embed" in dict(enc.named_buffers())
    d = TINY.embed_dim
    assert torch.all(enc.pos_embed[0, 0] == 0)  # class-token row
    # Patch (row 0, col 0): sin(0) = 0 for the first quarter, cos(0) = 1 for the second, per axis.
    quarter = torch.cat([torch.zeros(d // 4), torch.ones(d // 4)])
    torch.testing.assert_close(enc.pos_embed[0, 1], torch.cat([quarter, quarter]))
    # Patch (row 0, col 1): the column half's first frequency is 1, so sin(1) then cos(1).
    assert enc.pos_embed[0, 2, 0].item() == pytest.approx(math.sin(1.0))
    assert enc.pos_embed[0, 2, d // 4].item() == pytest.approx(math.cos(1.0))


def test_layer_ids_and_no_weight_decay() -> None:
    enc = VisionTransformer(TINY)
    assert enc.num_layers == TINY.depth + 1
    assert enc.layer_id("patch_embed.proj.weight") == 0
    assert enc.layer_id("cls_token") == 0
    assert enc.layer_id("blocks.0.attn.qkv.weight") == 1
    assert enc.layer_id("blocks.1.mlp.fc2.bias") == 2
    assert enc.layer_id("norm.weight") == TINY.depth + 1
    assert all(0 <= enc.layer_id(n) <= enc.num_layers for n, _ in enc.named_parameters())
    with pytest.raises(ValueError):
        enc.layer_id("head.weight")
    assert enc.no_weight_decay() == {"cls_token"}


def test_avg_pool_norms_after_pooling() -> None:
    enc = VisionTransformer(replace(TINY, pool="avg"))
    x = torch.randn(2, 1, 16, 16)
    tokens = enc.forward_features(x)
    torch.testing.assert_close(enc(x), enc.norm(tokens[:, 1:].mean(1)))
    torch.testing.assert_close(enc.forward_latent(x), enc.norm(tokens))


def test_head_structure() -> None:
    linear = MLPHead(16, 3, HeadConfig(depth=1, norm="batch"))
    assert isinstance(linear.input_norm, torch.nn.BatchNorm1d) and not linear.input_norm.affine
    assert len(linear.hidden) == 0 and linear.fc.in_features == 16
    deep = MLPHead(16, 3, HeadConfig(depth=3, width=8, norm="layer", dropout=0.1))
    assert [type(m).__name__ for m in deep.hidden] == ["Linear", "LayerNorm", "GELU", "Dropout"] * 2
    assert deep(torch.randn(4, 16)).shape == (4, 3)
    assert torch.all(deep.fc.bias == 0) and deep.fc.weight.abs().max() <= 0.02 + 1e-6  # trunc at 2 std
    assert isinstance(MLPHead(16, 3, HeadConfig(norm="none")).input_norm, torch.nn.Identity)


@pytest.mark.parametrize("pool", ["cls", "avg"])
def test_classifier_every_parameter_gets_gradient(pool: str) -> None:
    torch.manual_seed(0)
    cfg = replace(TINY, pool=pool)
    clf = build_classifier(cfg, HeadConfig(depth=2, width=8, norm="layer"), num_classes=3)
    logits = clf(torch.randn(4, 1, 16, 16))
    assert logits.shape == (4, 3) and clf.forward_features(torch.randn(2, 1, 16, 16)).shape == (2, 16)
    torch.nn.functional.cross_entropy(logits, torch.tensor([0, 1, 2, 0])).backward()
    for name, p in clf.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    assert clf.no_weight_decay() == {"encoder.cls_token"}


def test_build_classifier_reuses_encoder() -> None:
    mae = MaskedAutoencoder(TINY)
    clf = build_classifier(TINY, HeadConfig(), 3, encoder=mae.encoder)
    assert clf.encoder is mae.encoder
    with pytest.raises(ValueError, match="width"):
        build_classifier(replace(TINY, embed_dim=32), HeadConfig(), 3, mae.encoder)


def test_parameter_counts_by_hand() -> None:
    cfg = ModelConfig(
        img_size=8, in_chans=1, patch_size=4, embed_dim=8, depth=1, num_heads=2, mlp_ratio=2.0,
        decoder_embed_dim=4, decoder_depth=1, decoder_num_heads=2,
    )  # fmt: skip
    head_cfg = HeadConfig(depth=2, width=6, norm="layer")
    # Encoder, D=8, MLP hidden 16, patch 4x4x1 = 16 pixels:
    #   patch embed 16*8 + 8 = 136; cls token 8; final norm 2*8 = 16
    #   block: norm1+norm2 4*8 = 32; qkv 8*24 + 24 = 216; proj 8*8 + 8 = 72;
    #          fc1 8*16 + 16 = 144; fc2 16*8 + 8 = 136  -> 600
    encoder = 136 + 8 + 600 + 16  # = 760
    # Decoder, Dd=4, MLP hidden 8:
    #   decoder_embed 8*4 + 4 = 36; mask token 4; decoder_norm 8; decoder_pred 4*16 + 16 = 80
    #   block: norms 16; qkv 4*12 + 12 = 60; proj 16 + 4 = 20; fc1 4*8 + 8 = 40; fc2 8*4 + 4 = 36 -> 172
    decoder = 36 + 4 + 8 + 80 + 172  # = 300
    # Head: input LayerNorm 2*8 = 16; Linear 8*6 + 6 = 54; LayerNorm 12; Linear 6*3 + 3 = 21
    head = 16 + 54 + 12 + 21  # = 103
    expected = {"encoder_params": 760, "decoder_params": 300, "head_params": 103, "total_params": 863}
    assert (encoder, decoder, head) == (760, 300, 103)
    built = parameter_report(MaskedAutoencoder(cfg), MLPHead(cfg.embed_dim, 3, head_cfg))
    assert built == expected
    assert estimate_params(cfg, head_cfg, 3) == expected
    assert tuple(expected) == PARAM_KEYS


@pytest.mark.parametrize(
    ("cfg_kw", "head_kw", "k"),
    [
        ({}, {}, 3),
        (
            {"pool": "avg", "mlp_ratio": 2.5, "embed_dim": 12, "num_heads": 3},
            {"depth": 1, "norm": "batch"},
            5,
        ),
        ({"in_chans": 3, "patch_size": 2, "depth": 3}, {"depth": 3, "width": 7, "norm": "batch"}, 2),
        ({"decoder_embed_dim": 12, "decoder_depth": 2, "decoder_num_heads": 3}, {"norm": "none"}, 10),
        ({"embed_dim": 10, "num_heads": 5, "mlp_ratio": 1.3}, {"depth": 4, "width": 9, "norm": "layer"}, 4),
    ],
)
def test_estimate_params_matches_built(cfg_kw: dict, head_kw: dict, k: int) -> None:
    cfg = replace(TINY, **cfg_kw)
    head_cfg = HeadConfig(**head_kw)
    mae, head = MaskedAutoencoder(cfg), MLPHead(cfg.embed_dim, k, head_cfg)
    assert estimate_params(cfg, head_cfg, k) == parameter_report(mae, head)
    clf = build_classifier(cfg, head_cfg, k, encoder=mae.encoder)
    assert count_params(clf) == estimate_params(cfg, head_cfg, k)["total_params"]


def test_count_params_trainable_only() -> None:
    clf = build_classifier(TINY, HeadConfig(), 3)
    clf.encoder.requires_grad_(False)
    assert count_params(clf, trainable_only=True) == count_params(clf.head)


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"patch_size": 5}, "does not divide"),
        ({"num_heads": 3}, "not divisible"),
        ({"decoder_num_heads": 3}, "not divisible"),
        ({"mask_ratio": 1.0}, "mask_ratio"),
        ({"mask_ratio": -0.1}, "mask_ratio"),
        ({"pool": "max"}, "pool"),
        ({"loss": "l1"}, "loss"),
    ],
)
def test_model_config_rejects_bad_values(kw: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        replace(TINY, **kw)


def test_presets() -> None:
    expected = {"seed-128": (128, 8, 0.3), "seed-256": (256, 4, 0.75), "seed-300": (300, 4, 0.75)}
    for name, (width, patch, ratio) in expected.items():
        cfg = get_preset(name)
        assert (cfg.embed_dim, cfg.patch_size, cfg.mask_ratio) == (width, patch, ratio)
        assert (cfg.img_size, cfg.in_chans) == (64, 1)
    shallow = estimate_params(get_preset("seed-128"), HeadConfig(depth=4, width=512), 3)
    assert 1.4e6 < shallow["encoder_params"] < 1.7e6 and 1.8e6 < shallow["total_params"] < 2.4e6
    with pytest.raises(ValueError, match="seed-128"):
        get_preset("seed-512")
