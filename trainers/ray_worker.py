"""The Ray Train adapter: run the pipeline as a `TorchTrainer` run (PyTorch DDP workers).

This is the only trainers module that imports Ray. Each worker builds a `RayRuntime`, which is a
`DistributedRuntime` whose epoch reports go through `ray.train.report` (a barrier: every rank
reports every epoch) with rank 0 attaching a checkpoint of the weights.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import ray.train
import torch
import torch.distributed as dist
from ray.train import Checkpoint, CheckpointConfig, ScalingConfig
from ray.train.torch import TorchConfig, TorchTrainer
from ray.train.v2._internal.execution import context as execution_context

from maetune.trainers.config import RunConfig, run_config_from_tree, to_dict
from maetune.trainers.pipeline import run_pipeline
from maetune.trainers.pretrain_cache import PretrainedCache
from maetune.trainers.runtime import DistributedRuntime, Runtime


def _reportable(metrics: dict[str, Any]) -> dict[str, Any]:
    """Metrics Ray can store: numbers and strings, NaN kept as NaN."""
    return {
        k: (float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else v)
        for k, v in metrics.items()
        if isinstance(v, (int, float, str))
    }


class RayRuntime(DistributedRuntime):
    """A DDP rank inside a Ray Train worker group.

    Every report carries ``objective`` (the search's metric, 0.0 before fine-tuning produces it) and
    the ``constants`` (e.g. parameter counts), because Tune's schedulers and searchers read their
    metrics from every result.
    """

    objective: str | None = None
    constants: dict[str, Any] = {}  # noqa: RUF012 - replaced per instance, never mutated

    def report(self, metrics: dict[str, Any], state: dict[str, Any] | None = None) -> None:
        self.history.append(dict(metrics))
        payload = {**self.constants, **_reportable(metrics)}
        if self.objective:
            payload["objective"] = float(metrics.get(self.objective, 0.0))
        if state is None:
            ray.train.report(payload)
            return
        with tempfile.TemporaryDirectory() as tmp:
            torch.save(state, os.path.join(tmp, "state.pt"))
            ray.train.report(payload, checkpoint=Checkpoint.from_directory(tmp))


class SingleRayRuntime(Runtime):
    """A lone Ray Train worker with no process group: reports still go through Ray."""

    report = RayRuntime.report


def train_loop_per_worker(config: dict[str, Any]) -> dict[str, Any] | None:
    """Ray Train worker entry point: run the pipeline; rank 0 returns the result.

    Args:
        config: ``run`` (the RunConfig as a dict) and ``cache_dir`` (pretrained-encoder cache or None).
    """
    for name in ("ray.train", execution_context.__file__):  # one INFO line per report is noise
        logging.getLogger(name).setLevel(logging.WARNING)
    cfg = run_config_from_tree(config["run"])
    device = ray.train.torch.get_device()
    if dist.is_available() and dist.is_initialized():
        rt: Runtime = RayRuntime(device, bf16=cfg.train.bf16)
    else:
        rt = SingleRayRuntime(device, bf16=cfg.train.bf16)
    rt.objective = config.get("objective")
    rt.constants = dict(config.get("constants") or {})
    cache = PretrainedCache(config["cache_dir"]).hooks() if config.get("cache_dir") else None
    result = run_pipeline(cfg, rt, cache=cache)
    return result if rt.is_main else None


def default_storage(cfg: RunConfig) -> str:
    """Absolute storage path for Ray results (``./maetune-results`` unless configured)."""
    path = cfg.train.storage_path or "maetune-results"
    return path if "://" in path else str(Path(path).resolve())


def make_trainer(
    cfg: RunConfig,
    name: str,
    callbacks: Sequence[Any] = (),
    cache_dir: str | None = None,
    objective: str | None = None,
    constants: dict[str, Any] | None = None,
) -> TorchTrainer:
    """A `TorchTrainer` that runs all three stages of ``cfg`` in one DDP worker group.

    Args:
        cfg: The run configuration; ``cfg.train`` sets workers, GPU use and CPUs per worker.
        name: Ray run name; rerunning with the same name and storage resumes it.
        callbacks: Ray Train callbacks (e.g. Tune's report callback).
        cache_dir: Pretrained-encoder cache folder shared by runs, or None.
        objective: Metric copied into every report as ``objective`` (for Tune), or None.
        constants: Values added to every report (e.g. parameter counts).
    """
    return TorchTrainer(
        train_loop_per_worker,
        train_loop_config={
            "run": to_dict(cfg),
            "cache_dir": cache_dir,
            "objective": objective,
            "constants": constants or {},
        },
        scaling_config=ScalingConfig(
            num_workers=cfg.train.num_workers,
            use_gpu=cfg.train.use_gpu,
            resources_per_worker={"CPU": cfg.train.cpus_per_worker},
        ),
        torch_config=TorchConfig(backend="nccl" if cfg.train.use_gpu else "gloo"),
        run_config=ray.train.RunConfig(
            name=name,
            storage_path=default_storage(cfg),
            checkpoint_config=CheckpointConfig(num_to_keep=1),
            callbacks=list(callbacks),
        ),
    )


def fit_pipeline(
    cfg: RunConfig,
    name: str,
    callbacks: Sequence[Any] = (),
    cache_dir: str | None = None,
    objective: str | None = None,
    constants: dict[str, Any] | None = None,
) -> dict:
    """Run the pipeline on Ray Train and return rank 0's result (see `run_pipeline`).

    Raises:
        RuntimeError: With the worker's own error message when the run fails.
    """
    try:
        result = make_trainer(cfg, name, callbacks, cache_dir, objective, constants).fit()
    except ray.train.TrainingFailedError as exc:
        raise RuntimeError(f"training failed: {root_cause(exc)}") from None
    if result.return_value is None:
        raise RuntimeError("training finished without a result from rank 0")
    return result.return_value


def root_cause(exc: BaseException) -> str:
    """The innermost worker error as one line."""
    seen = exc
    for _ in range(10):
        nxt = getattr(seen, "worker_failures", None)
        if isinstance(nxt, dict) and nxt:
            seen = next(iter(nxt.values()))
            continue
        if seen.__cause__ is not None:
            seen = seen.__cause__
            continue
        break
    text = str(seen).strip().splitlines()
    last = [line for line in text if line.strip()]
    return last[-1] if last else type(seen).__name__
