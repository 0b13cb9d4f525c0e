"""MLflow: where runs, their metrics and their pictures are recorded.

The only search module that talks to MLflow. It honors ``MLFLOW_TRACKING_URI``; without it, a
local SQLite store ``./mlflow.db`` with artifacts under ``./mlartifacts``. Runs are written with
`MlflowClient` from the driver, so parent/child nesting is explicit (``mlflow.parentRunId``).
"""

from __future__ import annotations

import contextlib
import math
import os
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import torch
import yaml
from mlflow.entities import Metric, Param, RunTag
from mlflow.tracking import MlflowClient

from maetune.search import plots
from maetune.trainers.config import flatten

PER_EPOCH = (
    "pretrain_loss",
    "pretrain_val_loss",
    "probe_loss",
    "probe_val_acc",
    "probe_val_auc_micro",
    "finetune_loss",
    "finetune_val_acc",
    "finetune_val_auc_micro",
)


class TrackingError(RuntimeError):
    """The tracking server cannot be used; one line says why."""


def tracking_uri() -> str:
    """``MLFLOW_TRACKING_URI``, or a local SQLite store in the working directory."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{Path.cwd() / 'mlflow.db'}"


def connect() -> MlflowClient:
    """A client for the tracking URI, checked to be reachable before any work starts."""
    uri = tracking_uri()
    if uri.startswith(("http://", "https://")):
        try:
            urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=5).read()
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise TrackingError(f"MLflow tracking server {uri} is not reachable ({reason})") from None
    mlflow.set_tracking_uri(uri)
    return MlflowClient(uri)


def experiment_id(client: MlflowClient, name: str, create: bool = True) -> str:
    """The id of experiment ``name``, created if missing (artifacts beside a local SQLite store)."""
    exp = client.get_experiment_by_name(name)
    if exp is not None:
        return exp.experiment_id
    if not create:
        raise TrackingError(f"MLflow experiment {name!r} does not exist at {tracking_uri()}")
    location = None
    uri = tracking_uri()
    if uri.startswith("sqlite:///") and not os.environ.get("MLFLOW_ARTIFACT_ROOT"):
        location = (Path(uri.removeprefix("sqlite:///")).parent / "mlartifacts").resolve().as_uri()
    return client.create_experiment(name, artifact_location=location)


def start_run(
    client: MlflowClient,
    experiment: str,
    name: str | None,
    tags: Mapping[str, str],
    parent_run_id: str | None = None,
) -> str:
    """Create a run (nested under ``parent_run_id`` if given) and return its id."""
    all_tags = dict(tags)
    if parent_run_id:
        all_tags["mlflow.parentRunId"] = parent_run_id
    run = client.create_run(experiment_id(client, experiment), run_name=name, tags=all_tags)
    return run.info.run_id


def _finite(items: Mapping[str, Any]) -> dict[str, float]:
    return {
        k: float(v)
        for k, v in items.items()
        if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(float(v))
    }


def _log_in_batches(
    client: MlflowClient, run_id: str, metrics: Sequence[Metric] = (), params: Sequence[Param] = ()
) -> None:
    """Log metrics and params within MLflow's per-request limits (1000 metrics, 100 params)."""
    for i in range(0, len(params), 100):
        client.log_batch(run_id, params=params[i : i + 100])
    for i in range(0, len(metrics), 500):
        client.log_batch(run_id, metrics=metrics[i : i + 500])


def log_params(client: MlflowClient, run_id: str, config: Mapping[str, Any]) -> None:
    """The full config, flattened to dotted keys, as params."""
    _log_in_batches(client, run_id, params=[Param(k, str(v)) for k, v in sorted(flatten(config).items())])


def log_metrics(client: MlflowClient, run_id: str, metrics: Mapping[str, Any], step: int = 0) -> None:
    """Finite numeric metrics at one step."""
    now = int(time.time() * 1000)
    _log_in_batches(client, run_id, metrics=[Metric(k, v, now, step) for k, v in _finite(metrics).items()])


def log_history(client: MlflowClient, run_id: str, history: Iterable[Mapping[str, Any]]) -> None:
    """Per-epoch metrics, each at its epoch as the step."""
    now = int(time.time() * 1000)
    batch = [
        Metric(k, float(v), now, int(row["epoch"]))
        for row in history
        for k, v in _finite(row).items()
        if k in PER_EPOCH
    ]
    _log_in_batches(client, run_id, metrics=batch)


def set_tags(client: MlflowClient, run_id: str, tags: Mapping[str, str]) -> None:
    """Set several tags at once."""
    client.log_batch(run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])


def final_metrics(metrics: Mapping[str, Any]) -> dict[str, Any]:
    """Final metrics as logged: the best-epoch values of per-epoch names get a ``_best`` suffix, so
    they never add a point to the per-epoch curves; training losses are already on their curves."""
    out = {}
    for k, v in metrics.items():
        if k in PER_EPOCH:
            if "_val_" in k:
                out[f"{k}_best"] = v
        else:
            out[k] = v
    return out


def log_result(client: MlflowClient, run_id: str, result: Mapping[str, Any], history: bool = True) -> None:
    """Everything a finished pipeline produced: config, metrics, plots and the fine-tuned weights.

    Args:
        client: The MLflow client.
        run_id: The run to log into.
        result: The dict `maetune.trainers.pipeline.run_pipeline` returns.
        history: Also log the per-epoch metrics (False when they were logged live).
    """
    log_params(client, run_id, result["config"])
    if history:
        log_history(client, run_id, result["history"])
    log_metrics(client, run_id, final_metrics(result["metrics"]))
    log_metrics(client, run_id, {f"seconds_{k}": v for k, v in result["seconds"].items()})
    set_tags(client, run_id, {"maetune.pretrain": result["pretrain"]})
    art, classes = result["artifacts"], result["classes"]
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        (d / "config.yaml").write_text(yaml.safe_dump(result["config"], sort_keys=False))
        if "reconstructions" in art:
            plots.reconstruction_grid(art["reconstructions"], d / "reconstructions.png")
        plots.roc_plot(art["test_probs"], art["test_labels"], classes, d / "roc_curve.png")
        plots.confusion_plot(np.asarray(art["confusion"]), classes, d / "confusion_matrix.png")
        np.savez_compressed(
            d / "test_predictions.npz",
            probs=art["test_probs"],
            labels=art["test_labels"],
            classes=np.array(classes),
        )
        for name in (
            "config.yaml",
            "reconstructions.png",
            "roc_curve.png",
            "confusion_matrix.png",
            "test_predictions.npz",
        ):
            if (d / name).exists():
                client.log_artifact(run_id, str(d / name))
        weights = d / "classifier.pt"
        state = {k: torch.as_tensor(v) for k, v in result["weights"].items()}
        torch.save({"config": result["config"], "classes": classes, "state_dict": state}, weights)
        client.log_artifact(run_id, str(weights), artifact_path="model")


def end_run(client: MlflowClient, run_id: str, status: str = "FINISHED") -> None:
    """Mark a run FINISHED, FAILED or KILLED."""
    client.set_terminated(run_id, status=status)


def find_runs(client: MlflowClient, experiment: str, tags: Mapping[str, str]) -> list:
    """Runs of ``experiment`` carrying all the given tag values, newest first (deleted runs excluded)."""
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        return []
    flt = " and ".join(f"tags.`{k}` = '{v}'" for k, v in tags.items())
    return client.search_runs(
        [exp.experiment_id], filter_string=flt, order_by=["attributes.start_time DESC"], max_results=5000
    )


def delete_run(client: MlflowClient, run_id: str) -> None:
    """Delete a stale run (an interrupted trial that is about to run again)."""
    client.delete_run(run_id)


def run_record(run: Any) -> dict[str, Any]:
    """One run as a flat record: params, metrics, tags and ids, for reports."""
    rec: dict[str, Any] = {
        "trial": run.data.tags.get("maetune.trial_id", run.info.run_name),
        "run_id": run.info.run_id,
        "status": run.info.status,
        "state": run.data.tags.get("maetune.state", ""),
    }
    for k, v in run.data.params.items():
        try:
            rec[k] = yaml.safe_load(v)
        except yaml.YAMLError:
            rec[k] = v
    rec.update(run.data.metrics)
    return rec


def download_artifact(client: MlflowClient, run_id: str, path: str, dst: str) -> Path:
    """Download one artifact of a run into ``dst`` and return its local path."""
    return Path(client.download_artifacts(run_id, path, dst))


def log_files(client: MlflowClient, run_id: str, folder: Path) -> None:
    """Log every file of a folder as run artifacts."""
    for f in sorted(folder.iterdir()):
        if f.is_file():
            client.log_artifact(run_id, str(f))


def register_model(client: MlflowClient, name: str, run_id: str, artifact_path: str = "model") -> str:
    """Register a run's model folder as a new version of registered model ``name``; returns the version."""
    with contextlib.suppress(mlflow.exceptions.MlflowException):  # already registered
        client.create_registered_model(name)
    run = client.get_run(run_id)
    version = client.create_model_version(name, f"{run.info.artifact_uri}/{artifact_path}", run_id=run_id)
    return str(version.version)
