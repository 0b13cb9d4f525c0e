"""One Tune trial: a driver function that runs the trial's configuration as one Ray Train run.

Train V2 runs one `TorchTrainer` inside each Tune trial; `TuneReportCallback` forwards every
`ray.train.report` (every epoch of every stage) to Tune, so ASHA and Optuna see them as they come.
The trial's full result (weights, predictions, reconstructions) is written to the search's
storage as ``outputs/<trial_id>.pt``; the driver's MLflow callback logs it. A resumed search finds
that file and re-reports the stored final metrics instead of training again.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from ray import tune
from ray.tune.integration.ray_train import TuneReportCallback

from maetune.search.config import search_config_from_tree
from maetune.search.space import SearchSpace
from maetune.trainers.config import run_config_from_tree
from maetune.trainers.pipeline import parameter_counts
from maetune.trainers.ray_worker import fit_pipeline

FINAL_KEYS = (
    "finetune_val_acc",
    "finetune_val_auc_micro",
    "probe_val_acc",
    "probe_test_acc",
    "probe_test_auc_micro",
    "test_acc",
    "test_auc_micro",
    "test_auc_macro",
    "pretrain_loss",
    "encoder_params",
    "decoder_params",
    "head_params",
    "total_params",
)


@dataclass(frozen=True)
class TrialSetup:
    """What every trial of one search shares (picklable, passed with `tune.with_parameters`).

    Attributes:
        base_tree: The run sections of the config, as a dict.
        search_tree: The ``search`` section, as a dict.
        num_classes: Classes in the data (for parameter budgets).
        outputs_dir: Where finished trials leave their full results.
        cache_dir: The shared pretrained-encoder cache.
        search_name: The search's name, prefixing each trial's Train run name.
    """

    base_tree: dict[str, Any]
    search_tree: dict[str, Any]
    num_classes: int
    outputs_dir: str
    cache_dir: str
    search_name: str

    def space(self) -> SearchSpace:
        """The search space, rebuilt from the stored trees."""
        return SearchSpace(
            run_config_from_tree(self.base_tree), search_config_from_tree(self.search_tree), self.num_classes
        )


def final_report(result: dict[str, Any], objective: str) -> dict[str, Any]:
    """The trial's last Tune result: the objective, the final metrics and a completion flag."""
    metrics = result["metrics"]
    out = {k: float(metrics[k]) for k in FINAL_KEYS if k in metrics}
    out["objective"] = float(metrics.get(objective, 0.0))
    out["pipeline_done"] = 1.0
    out["pretrain_reused"] = 1.0 if result["pretrain"] == "reused" else 0.0
    return out


def run_trial(config: dict[str, Any], setup: TrialSetup) -> None:
    """The Tune trainable: apply the sampled values, run the pipeline on Ray Train, report.

    Args:
        config: What Tune passes: the sampled values (Optuna names) and ``optuna_number``.
        setup: The search's shared setup.
    """
    space = setup.space()
    cfg = space.apply(config)
    trial_id = tune.get_context().get_trial_id()
    objective = space.search.metric
    out_path = Path(setup.outputs_dir) / f"{trial_id}.pt"
    if out_path.exists():  # finished before the search was interrupted: never train or log it twice
        stored = torch.load(out_path, map_location="cpu", weights_only=False)
        tune.report(final_report(stored, objective))
        return
    counts = parameter_counts(cfg, setup.num_classes)
    result = fit_pipeline(
        cfg,
        name=f"{setup.search_name}-{trial_id}",
        callbacks=[TuneReportCallback()],
        cache_dir=setup.cache_dir,
        objective=objective,
        constants=dict(counts),
    )
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_suffix(f".tmp{os.getpid()}")
    torch.save(result, tmp)
    os.replace(tmp, out_path)
    tune.report(final_report(result, objective))
