"""`maetune run` end to end on a real local Ray cluster, read back from the MLflow store."""

from __future__ import annotations

import pytest
from conftest import REPO, run_cli

pytestmark = pytest.mark.ray

PER_EPOCH = ("pretrain_loss", "probe_val_acc", "finetune_val_acc", "finetune_val_auc_micro")
FINAL = (
    "probe_test_acc",
    "probe_test_auc_micro",
    "test_acc",
    "test_auc_micro",
    "test_auc_macro",
    "encoder_params",
    "head_params",
    "total_params",
)
ARTIFACTS = {
    "config.yaml",
    "reconstructions.png",
    "roc_curve.png",
    "confusion_matrix.png",
    "model/classifier.pt",
}


def test_run_smoke_logs_everything(tmp_path) -> None:
    from mlflow.tracking import MlflowClient

    db = tmp_path / "mlflow.db"
    uri = f"sqlite:///{db}"
    proc = run_cli(
        [
            "run",
            "--config",
            str(REPO / "configs/smoke.yaml"),
            "--set",
            f"train.storage_path={tmp_path / 'ray'}",
        ],
        cwd=tmp_path,
        env={"MLFLOW_TRACKING_URI": uri},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "[finetune] epoch" in proc.stderr  # progress is visible while it runs
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("maetune-smoke")
    runs = client.search_runs([exp.experiment_id])
    assert len(runs) == 1
    run = runs[0]
    assert run.info.status == "FINISHED"
    assert run.data.params["model.embed_dim"] == "32"
    assert run.data.params["data.name"] == "digits"
    for key in FINAL:
        assert key in run.data.metrics, key
    for key in PER_EPOCH:
        history = client.get_metric_history(run.info.run_id, key)
        assert len(history) >= 2 and sorted(m.step for m in history) == list(range(len(history))), key
    listed = {a.path for a in client.list_artifacts(run.info.run_id)}
    listed |= {a.path for a in client.list_artifacts(run.info.run_id, "model")}
    assert listed >= ARTIFACTS, ARTIFACTS - listed
    assert f"run {run.info.run_id}" in proc.stdout
