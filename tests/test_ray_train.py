"""A real Ray Train run: 2 DDP workers (gloo) on a local Ray cluster, the whole pipeline."""

from __future__ import annotations

import math

import pytest

from maetune.trainers.config import load_run_config
from maetune.trainers.pipeline import run_pipeline
from maetune.trainers.runtime import Runtime

pytestmark = pytest.mark.ray

FAST = ["pretrain.epochs=2", "probe.epochs=2", "finetune.epochs=2"]


@pytest.fixture(scope="module")
def ray_cluster():
    import ray

    ray.init(num_cpus=2, include_dashboard=False, _node_ip_address="127.0.0.1")
    yield
    ray.shutdown()


def test_two_worker_ddp_run(ray_cluster, tmp_path) -> None:
    from maetune.trainers.ray_worker import fit_pipeline

    cfg = load_run_config(
        "configs/smoke.yaml", [*FAST, f"train.storage_path={tmp_path}", "train.num_workers=2"]
    )
    result = fit_pipeline(cfg, name="ddp-test")
    m = result["metrics"]
    assert math.isfinite(m["test_acc"]) and m["test_acc"] > 0.15
    # every stage reported every epoch, in order
    assert [r["stage"] for r in result["history"]] == ["pretrain"] * 2 + ["probe"] * 2 + ["finetune"] * 2
    # one checkpoint kept on storage, written by rank 0
    checkpoints = list((tmp_path / "ddp-test").glob("checkpoint_*/state.pt"))
    assert len(checkpoints) == 1
    # DDP with 2 workers sees the same test split in full: gathered predictions cover every test image
    assert len(result["artifacts"]["test_labels"]) == result["artifacts"]["confusion"].sum()
    # and matches an in-process run on the test labels' order (gathering restores it)
    local = run_pipeline(load_run_config("configs/smoke.yaml", FAST), Runtime(verbose=False))
    assert (local["artifacts"]["test_labels"] == result["artifacts"]["test_labels"]).all()


def test_worker_error_surfaces_as_one_line(ray_cluster, tmp_path) -> None:
    from maetune.trainers.ray_worker import fit_pipeline

    cfg = load_run_config(
        "configs/smoke.yaml",
        [*FAST, f"train.storage_path={tmp_path}", "train.num_workers=1", "data.pretrain_classes=[nope]"],
    )
    with pytest.raises(RuntimeError) as info:
        fit_pipeline(cfg, name="bad-test")
    assert "nope" in str(info.value)
    assert "\n" not in str(info.value)
