"""One Ray Train run per trial (all three stages) against one Train run per stage, side by side.

Runs the smoke preset (tiny epochs) both ways on a local Ray cluster, alternating, and prints the
median wall time of each and their ratio; writes ``bench/results/stage_grouping.json``.

    python bench/stage_grouping.py [--repeats 2] [--workers 1]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any

import ray
import ray.train
import torch
from ray.train import ScalingConfig
from ray.train.torch import TorchConfig, TorchTrainer

from maetune.trainers.config import load_run_config, run_config_from_tree, to_dict
from maetune.trainers.data import load_dataset
from maetune.trainers.finetune import finetune
from maetune.trainers.pretrain import pretrain
from maetune.trainers.probe import probe
from maetune.trainers.ray_worker import RayRuntime, fit_pipeline

OUT = Path(__file__).parent / "results" / "stage_grouping.json"


def _numpy(state: dict) -> dict:
    return {k: v.numpy() for k, v in state.items()}


def _tensors(state: dict) -> dict:
    return {k: torch.as_tensor(v) for k, v in state.items()}


def one_stage_loop(config: dict[str, Any]) -> dict[str, Any] | None:
    """Train worker running a single stage, with the earlier stages' weights passed in."""
    cfg = run_config_from_tree(config["run"])
    rt = RayRuntime(ray.train.torch.get_device())
    data = load_dataset(cfg.data)
    stage = config["stage"]
    if stage == "pretrain":
        out = pretrain(cfg, data, rt)
    elif stage == "probe":
        out = probe(cfg, data, rt, _tensors(config["mae"]))
    else:
        out = finetune(cfg, data, rt, _tensors(config["mae"]), _tensors(config["head"]))
    return {"state": _numpy(out.state), "metrics": out.metrics} if rt.is_main else None


def per_stage(cfg: Any, storage: Path, tag: str) -> float:
    """Three Train runs, one per stage."""
    start = time.perf_counter()
    carried: dict[str, Any] = {}
    for stage in ("pretrain", "probe", "finetune"):
        trainer = TorchTrainer(
            one_stage_loop,
            train_loop_config={"run": to_dict(cfg), "stage": stage, **carried},
            scaling_config=ScalingConfig(num_workers=cfg.train.num_workers),
            torch_config=TorchConfig(backend="gloo"),
            run_config=ray.train.RunConfig(name=f"{tag}-{stage}", storage_path=str(storage)),
        )
        result = trainer.fit().return_value
        carried["mae" if stage == "pretrain" else "head"] = result["state"]
    return time.perf_counter() - start


def per_trial(cfg: Any, tag: str) -> float:
    """One Train run for all three stages (what maetune does)."""
    start = time.perf_counter()
    fit_pipeline(cfg, name=tag)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()
    storage = Path("/tmp/maetune-bench-grouping").resolve()
    cfg = load_run_config(
        "configs/smoke.yaml",
        [
            "pretrain.epochs=2",
            "probe.epochs=2",
            "finetune.epochs=2",
            f"train.num_workers={args.workers}",
            f"train.storage_path={storage}",
        ],
    )
    ray.init(num_cpus=2, include_dashboard=False)
    one, three = [], []
    for r in range(args.repeats):
        one.append(per_trial(cfg, f"one-{r}-{time.time_ns()}"))
        three.append(per_stage(cfg, storage, f"three-{r}-{time.time_ns()}"))
        print(f"repeat {r}: per trial {one[-1]:.1f} s, per stage {three[-1]:.1f} s", flush=True)
    ray.shutdown()
    res = {
        "one_run_per_trial_s": statistics.median(one),
        "one_run_per_stage_s": statistics.median(three),
        "ratio_per_stage_over_per_trial": statistics.median(three) / statistics.median(one),
        "samples": {"per_trial": one, "per_stage": three},
        "workers": args.workers,
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(res, indent=2))
    print(f"one Train run per trial:  {res['one_run_per_trial_s']:.1f} s (median)")
    print(f"one Train run per stage: {res['one_run_per_stage_s']:.1f} s (median)")
    print(f"per-stage / per-trial:    {res['ratio_per_stage_over_per_trial']:.2f}x   -> {OUT}")


if __name__ == "__main__":
    main()
