"""LARS, parameter groups and schedules on cases worked out by hand."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from maetune.model import HeadConfig, MLPHead, ModelConfig, VisionTransformer
from maetune.trainers.optim import (
    LARS,
    finetune_groups,
    scaled_lr,
    set_lr,
    warmup_cosine,
    weight_decay_groups,
)


def test_scaled_lr_is_linear_in_batch() -> None:
    assert scaled_lr(1e-3, 256) == pytest.approx(1e-3)
    assert scaled_lr(1e-3, 512) == pytest.approx(2e-3)


def test_warmup_cosine_known_points() -> None:
    # 10 warmup steps to peak 1.0, then cosine over 90 steps to floor 0.1.
    assert warmup_cosine(0, 100, 10, 1.0, 0.1) == pytest.approx(0.1)
    assert warmup_cosine(9, 100, 10, 1.0, 0.1) == pytest.approx(1.0)
    assert warmup_cosine(10, 100, 10, 1.0, 0.1) == pytest.approx(1.0)
    assert warmup_cosine(55, 100, 10, 1.0, 0.1) == pytest.approx(0.1 + 0.9 * 0.5)  # halfway: cos = 0
    assert warmup_cosine(100, 100, 10, 1.0, 0.1) == pytest.approx(0.1)
    assert warmup_cosine(3, 10, 0, 2.0) == pytest.approx(1.0 + math.cos(math.pi * 0.3))


def test_lars_step_matches_hand_computation() -> None:
    w = nn.Parameter(torch.tensor([[3.0, 4.0]]))  # ||w|| = 5
    b = nn.Parameter(torch.tensor([1.0]))
    opt = LARS([w, b], lr=0.1, weight_decay=0.0, momentum=0.9, trust_coefficient=0.01)
    w.grad = torch.tensor([[0.0, 2.0]])  # ||g|| = 2
    b.grad = torch.tensor([0.5])
    opt.step()
    # weight: trust = 0.01 * 5 / 2 = 0.025, update = lr * trust * g = 0.1 * 0.025 * [0, 2]
    assert torch.allclose(w.data, torch.tensor([[3.0, 4.0 - 0.005]]))
    # bias: no trust ratio, plain SGD step
    assert torch.allclose(b.data, torch.tensor([1.0 - 0.05]))
    # second step: momentum buffer = 0.9 * mu + new d_p
    w.grad = torch.tensor([[0.0, 2.0]])
    b.grad = torch.tensor([0.5])
    opt.step()
    assert torch.allclose(b.data, torch.tensor([0.95 - 0.1 * (0.9 * 0.5 + 0.5)]))


def test_lars_weight_decay_enters_before_trust_ratio() -> None:
    w = nn.Parameter(torch.tensor([[1.0, 0.0]]))
    opt = LARS([w], lr=1.0, weight_decay=1.0, momentum=0.0, trust_coefficient=1.0)
    w.grad = torch.tensor([[1.0, 0.0]])
    opt.step()  # d = g + w = [2, 0]; trust = ||w|| / ||d|| = 0.5; step = 1.0 * 0.5 * [2, 0]
    assert torch.allclose(w.data, torch.tensor([[0.0, 0.0]]))


def test_weight_decay_groups_exclude_biases_and_norms() -> None:
    model = nn.Sequential(nn.Linear(4, 4), nn.LayerNorm(4))
    decay, plain = weight_decay_groups(model, 0.05)
    assert [p.shape for p in decay["params"]] == [torch.Size([4, 4])]
    assert len(plain["params"]) == 3
    assert plain["weight_decay"] == 0.0


def test_finetune_groups_scale_encoder_layers() -> None:
    cfg = ModelConfig(img_size=8, patch_size=4, embed_dim=16, depth=2, num_heads=2)
    enc = VisionTransformer(cfg)
    head = MLPHead(16, 3, HeadConfig(depth=1))
    groups = finetune_groups(enc, head, encoder_lr=0.1, head_lr=1.0, weight_decay=0.05, layer_decay=0.5)
    n_params = sum(len(g["params"]) for g in groups)
    assert n_params == len(list(enc.parameters())) + len(list(head.parameters()))
    scales = sorted({round(g["lr_scale"], 6) for g in groups})
    # layers 0..3 of an encoder with num_layers 3: 0.1 * 0.5**(3 - i), and the head at 1.0
    assert scales == [0.0125, 0.025, 0.05, 0.1, 1.0]
    opt = torch.optim.AdamW(groups, lr=1.0)
    set_lr(opt, 2.0)
    assert max(g["lr"] for g in opt.param_groups) == pytest.approx(2.0)
    assert min(g["lr"] for g in opt.param_groups) == pytest.approx(0.025)
