"""The end of a search (and `maetune report`): trade-off table, Pareto front, importances, best config.

Reads the search's child runs back from MLflow, so it works the same for a search that just ended,
one still running, or one from last week. Accuracy on the plots and tables is test accuracy (what
a person wants to know); the best configuration is chosen on the search's validation objective, so
the test split never selects anything.
"""

from __future__ import annotations

import json
import math
import tempfile
from pathlib import Path
from typing import Any

import optuna
import yaml

from maetune.search import report, tracking
from maetune.search.config import SearchConfig


def parent_runs(client: Any, experiment: str) -> list:
    """The experiment's search runs, newest first; a clear error when there are none."""
    if client.get_experiment_by_name(experiment) is None:
        raise ValueError(f"MLflow experiment {experiment!r} does not exist at {tracking.tracking_uri()}")
    runs = tracking.find_runs(client, experiment, {"maetune.role": "search"})
    if not runs:
        raise ValueError(f"experiment {experiment!r} holds no search runs")
    return runs


def trial_records(client: Any, experiment: str, parent_run_id: str) -> list[dict[str, Any]]:
    """One record per trial of a search (params, metrics, end state)."""
    runs = tracking.find_runs(
        client, experiment, {"mlflow.parentRunId": parent_run_id, "maetune.role": "trial"}
    )
    return [tracking.run_record(r) for r in runs]


def best_trial(records: list[dict[str, Any]], metric: str) -> dict[str, Any] | None:
    """The finished trial with the highest best-epoch validation ``metric`` (ties: fewer parameters)."""
    key = f"{metric}_best"
    done = [r for r in records if r.get("state") == "finished" and math.isfinite(r.get(key, math.nan))]
    if not done:
        return None
    return max(done, key=lambda r: (r[key], -r.get("total_params", math.inf)))


def importances(storage_url: str | None, study_name: str | None, multi: bool) -> dict[str, float]:
    """Optuna's fANOVA-free default (mean decrease impurity) importances; empty when undefined."""
    if not storage_url or not study_name:
        return {}
    try:
        study = optuna.load_study(study_name=study_name, storage=storage_url)
        target = (lambda t: t.values[0]) if multi else None
        return dict(optuna.importance.get_param_importances(study, target=target))
    except (RuntimeError, ValueError, KeyError):
        return {}  # fewer than two complete trials, or a parameter that never varied


def summarize(
    client: Any,
    experiment: str,
    parent_run_id: str,
    search: SearchConfig | None = None,
    storage_url: str | None = None,
    study_name: str | None = None,
    out_dir: Path | None = None,
    log_to_parent: bool = True,
    register: bool = True,
) -> dict[str, Any]:
    """Build the search's report and (optionally) attach it to the parent run.

    Args:
        client: MLflow client.
        experiment: Experiment name.
        parent_run_id: The search's parent run.
        search: The search settings (objective and mode); read from the parent's params if None.
        storage_url: Optuna storage, for parameter importances.
        study_name: Optuna study name.
        out_dir: Also write the files here (``maetune report``).
        log_to_parent: Log ``pareto.png``, ``tradeoff.csv``/``.png``, importances and
            ``best_config.yaml`` to the parent run.
        register: Register the best trial's model in the MLflow model registry.

    Returns:
        ``text`` (tables for the terminal), ``best_run_id``, ``best_config``, ``trials``, ``importances``.
    """
    parent = client.get_run(parent_run_id)
    metric = search.metric if search else parent.data.params.get("search.metric", "finetune_val_auc_micro")
    multi = (search.mode if search else parent.data.params.get("search.mode")) == "multi"
    records = trial_records(client, experiment, parent_run_id)
    if not records:
        raise ValueError(f"search run {parent_run_id} has no trial runs yet")
    df = report.trials_frame(records)
    table = report.tradeoff_table(df, objective="test_acc")
    best = best_trial(records, metric)
    imp = importances(storage_url, study_name, multi)

    with tempfile.TemporaryDirectory() as tmp:
        d = Path(out_dir) if out_dir else Path(tmp)
        d.mkdir(parents=True, exist_ok=True)
        report.pareto_plot(df, d / "pareto.png", objective="test_acc", cost="total_params")
        report.write_tradeoff_csv(table, d / "tradeoff.csv")
        report.tradeoff_plot(table, d / "tradeoff.png", objective="test_acc")
        (d / "param_importances.json").write_text(json.dumps(imp, indent=2))
        best_config = None
        if best is not None:
            cfg_path = tracking.download_artifact(client, best["run_id"], "config.yaml", str(d))
            best_config = yaml.safe_load(cfg_path.read_text())
            (d / "best_config.yaml").write_text(yaml.safe_dump(best_config, sort_keys=False))
            cfg_path.unlink(missing_ok=True)
        if log_to_parent:
            tracking.log_files(client, parent_run_id, d)
            if best is not None:
                tracking.set_tags(client, parent_run_id, {"maetune.best_run_id": best["run_id"]})
                tracking.log_metrics(
                    client,
                    parent_run_id,
                    {
                        f"best_{metric}": best[f"{metric}_best"],
                        "best_test_acc": best.get("test_acc", math.nan),
                    },
                )
        if register and best is not None:
            tracking.register_model(client, f"{experiment}-best", best["run_id"])

    lines = [
        "Trade-off: best test accuracy per encoder size and head depth",
        report.format_table(table),
        "Pareto front (test accuracy up, total parameters down)",
        report.format_front(df),
    ]
    if best is not None:
        lines.append(
            f"Best configuration (highest {metric}): trial {best['trial']}, run {best['run_id']}, "
            f"{metric} {best[metric + '_best']:.4f}, test_acc {best.get('test_acc', math.nan):.4f}, "
            f"{report.human_count(best.get('total_params', 0))} parameters"
        )
        lines.append(
            yaml.safe_dump(
                {k: best_config[k] for k in ("model", "head") if best_config and k in best_config},
                sort_keys=False,
            ).rstrip()
        )
    if imp:
        lines.append("Parameter importances: " + ", ".join(f"{k} {v:.2f}" for k, v in imp.items()))
    return {
        "text": "\n".join(lines),
        "best_run_id": best["run_id"] if best else None,
        "best_config": best_config,
        "trials": records,
        "importances": imp,
    }
