"""The three stages in-process (no Ray): they learn, they are deterministic, they report every epoch."""

from __future__ import annotations

import math

import numpy as np
import pytest

from maetune.trainers.config import load_run_config
from maetune.trainers.data import load_dataset
from maetune.trainers.pipeline import run_pipeline
from maetune.trainers.pretrain_cache import PretrainedCache, pretrain_key
from maetune.trainers.runtime import Runtime

FAST = ["pretrain.epochs=2", "probe.epochs=3", "finetune.epochs=3"]


@pytest.fixture(scope="module")
def smoke_result() -> dict:
    cfg = load_run_config("configs/smoke.yaml", FAST)
    return run_pipeline(cfg, Runtime(verbose=False))


def test_result_has_every_logged_name(smoke_result: dict) -> None:
    m = smoke_result["metrics"]
    for key in (
        "pretrain_loss",
        "probe_test_acc",
        "probe_test_auc_micro",
        "test_acc",
        "test_auc_micro",
        "test_auc_macro",
        "encoder_params",
        "head_params",
        "total_params",
    ):
        assert key in m and math.isfinite(m[key]), key
    assert m["total_params"] == m["encoder_params"] + m["head_params"]
    stages = [row["stage"] for row in smoke_result["history"]]
    assert stages == ["pretrain"] * 2 + ["probe"] * 3 + ["finetune"] * 3
    rec = smoke_result["artifacts"]["reconstructions"]
    assert rec["original"].shape == rec["reconstruction"].shape == (8, 1, 8, 8)
    assert smoke_result["artifacts"]["confusion"].sum() == len(smoke_result["artifacts"]["test_labels"])


def test_fine_tuning_beats_chance_on_digits(smoke_result: dict) -> None:
    # 10 balanced classes: chance is 0.10. Three short epochs of a tiny ViT must clear it clearly.
    assert smoke_result["metrics"]["test_acc"] > 0.3
    assert smoke_result["metrics"]["test_auc_micro"] > 0.75


def test_same_seed_same_numbers(smoke_result: dict) -> None:
    cfg = load_run_config("configs/smoke.yaml", FAST)
    again = run_pipeline(cfg, Runtime(verbose=False))
    assert again["metrics"] == smoke_result["metrics"]
    for k, v in smoke_result["weights"].items():
        np.testing.assert_array_equal(again["weights"][k], v)


def test_pretrain_cache_reuses_weights(tmp_path) -> None:
    cfg = load_run_config("configs/smoke.yaml", ["pretrain.epochs=1", "probe.epochs=1", "finetune.epochs=1"])
    data = load_dataset(cfg.data)
    cache = PretrainedCache(tmp_path)
    first = run_pipeline(cfg, Runtime(verbose=False), data=data, cache=cache.hooks())
    assert first["pretrain"] == "trained"
    assert cache.path(cfg).exists()
    # A different head shares the pretrained encoder; a different mask ratio does not.
    other_head = load_run_config(
        "configs/smoke.yaml", ["pretrain.epochs=1", "probe.epochs=1", "finetune.epochs=1", "head.depth=3"]
    )
    assert pretrain_key(other_head) == pretrain_key(cfg)
    second = run_pipeline(other_head, Runtime(verbose=False), data=data, cache=cache.hooks())
    assert second["pretrain"] == "reused"
    # the cached pretraining's epochs are replayed (so every trial reports the same epochs), not rerun
    replayed = [r for r in second["history"] if r["stage"] == "pretrain"]
    assert replayed == [r for r in first["history"] if r["stage"] == "pretrain"]
    assert second["seconds"]["pretrain"] == 0.0
    other_mask = load_run_config("configs/smoke.yaml", ["model.mask_ratio=0.25"])
    assert pretrain_key(other_mask) != pretrain_key(cfg)
