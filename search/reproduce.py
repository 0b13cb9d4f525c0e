"""`maetune reproduce`: read a run's exact config back from MLflow, rerun it, compare the numbers.

Tolerance: the pipeline is seeded end to end, so the same config on the same kind of machine and
worker count repeats its numbers; what can still move them is float non-associativity (multithreaded
CPU reductions, other GPU kernels), which can flip a prediction near a decision boundary. A flip
moves accuracy by 1/N on N test images, so accuracy-type metrics may differ by max(0.01, 3/N) and
ROC-AUCs, which move smoothly with the scores, by 0.01. ``--tolerance`` overrides both.
"""

from __future__ import annotations

import math
import tempfile
from typing import Any

import yaml

from maetune.search import tracking
from maetune.search.summary import parent_runs
from maetune.trainers.config import run_config_from_tree

COMPARED = (
    "probe_test_acc",
    "probe_test_auc_micro",
    "test_acc",
    "test_auc_micro",
    "test_auc_macro",
    "finetune_val_acc_best",
    "total_params",
)


def resolve_run(client: Any, run_id: str | None, best: bool, experiment: str | None) -> str:
    """The run to reproduce: the given id, or the best trial of the experiment's latest search."""
    if run_id:
        try:
            client.get_run(run_id)
        except Exception:  # MLflow raises its own exception types for unknown ids
            raise ValueError(f"MLflow run {run_id!r} does not exist at {tracking.tracking_uri()}") from None
        return run_id
    if not best:
        raise ValueError("give a RUN_ID or --best")
    parent = parent_runs(client, experiment or "maetune-quick")[0]
    best_id = parent.data.tags.get("maetune.best_run_id")
    if not best_id:
        raise ValueError(f"search {parent.info.run_name!r} has no best trial recorded (did it finish?)")
    return best_id


def tolerances(n_test: int, override: float | None) -> dict[str, float]:
    """Allowed absolute difference per compared metric."""
    acc = override if override is not None else max(0.01, 3 / max(n_test, 1))
    auc = override if override is not None else 0.01
    return {k: (0.0 if k == "total_params" else auc if "auc" in k else acc) for k in COMPARED}


def reproduce(
    run_id: str | None,
    best: bool = False,
    experiment: str | None = None,
    tolerance: float | None = None,
    address: str | None = None,
) -> tuple[str, list[dict], bool]:
    """Rerun a recorded configuration as a new MLflow run tagged ``maetune.reproduction_of``.

    Returns:
        The new run id, one row per compared metric (recorded, reproduced, difference, tolerance, ok),
        and whether every metric is within tolerance.
    """
    from maetune.search.single import run_single

    client = tracking.connect()
    source = resolve_run(client, run_id, best, experiment)
    recorded = client.get_run(source).data.metrics
    with tempfile.TemporaryDirectory() as tmp:
        path = tracking.download_artifact(client, source, "config.yaml", tmp)
        cfg = run_config_from_tree(yaml.safe_load(path.read_text()))
    new_id, raw = run_single(cfg, address=address, tags={"maetune.reproduction_of": source})
    metrics = tracking.final_metrics(raw)
    n_test = int(metrics.get("n_test", 0)) or 0
    tol = tolerances(n_test, tolerance)
    rows, ok = [], True
    for k in COMPARED:
        a, b = recorded.get(k, math.nan), metrics.get(k, math.nan)
        diff = abs(a - b) if math.isfinite(a) and math.isfinite(b) else math.nan
        good = math.isfinite(diff) and diff <= tol[k] + 1e-12
        ok &= good
        rows.append(
            {"metric": k, "recorded": a, "reproduced": b, "difference": diff, "tolerance": tol[k], "ok": good}
        )
    return new_id, rows, ok
