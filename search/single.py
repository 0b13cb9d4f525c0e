"""`maetune run`: one configuration through pretrain -> probe -> finetune on Ray Train, one MLflow run."""

from __future__ import annotations

import sys
import time
import uuid
from typing import Any

from maetune.search import tracking
from maetune.trainers.config import RunConfig, with_geometry
from maetune.trainers.data import load_dataset


def run_single(
    cfg: RunConfig, address: str | None = None, tags: dict[str, str] | None = None, in_process: bool = False
) -> tuple[str, dict[str, Any]]:
    """Run one configuration and log it as one MLflow run.

    Args:
        cfg: The configuration.
        address: Ray cluster address (``None``: ``RAY_ADDRESS`` or a local cluster).
        tags: Extra tags for the MLflow run (e.g. ``maetune.reproduction_of``).
        in_process: Run the stages in this process without Ray (debugging).

    Returns:
        The MLflow run id and the final metrics.
    """
    client = tracking.connect()  # fail fast on an unreachable tracking server
    data = load_dataset(cfg.data)  # fail fast on bad data, and fill the lens-sim cache once
    cfg = with_geometry(cfg, data.img_size, data.in_chans)
    if not in_process:  # and on an unreachable cluster, before any run is recorded
        from maetune.cluster.session import connect

        print(f"connecting to {connect(address)}", file=sys.stderr)
    run_name = cfg.mlflow.run_name or f"run-{time.strftime('%Y%m%d-%H%M%S')}"
    run_id = tracking.start_run(
        client, cfg.mlflow.experiment, run_name, {"maetune.role": "run", **(tags or {})}
    )
    print(
        f"MLflow run {run_id} in experiment {cfg.mlflow.experiment!r} at {tracking.tracking_uri()}",
        file=sys.stderr,
    )
    try:
        if in_process:
            from maetune.trainers.pipeline import run_pipeline
            from maetune.trainers.runtime import Runtime

            result = run_pipeline(cfg, Runtime(), data=data)
        else:
            from maetune.trainers.ray_worker import fit_pipeline

            result = fit_pipeline(cfg, name=f"{run_name}-{uuid.uuid4().hex[:6]}")
        tracking.log_result(client, run_id, result)
    except BaseException as exc:
        status = "KILLED" if isinstance(exc, KeyboardInterrupt) else "FAILED"
        tracking.set_tags(client, run_id, {"maetune.error": str(exc)[:500]})
        tracking.end_run(client, run_id, status)
        raise
    tracking.end_run(client, run_id)
    return run_id, result["metrics"]
