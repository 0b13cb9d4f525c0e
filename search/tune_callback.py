"""The Tune callback that writes each trial into MLflow as a child run of the search's parent run.

It runs on the Tune driver: a child run is opened when a trial starts (params, Tune id, Optuna
number), every epoch result is logged as it arrives, and the end state is recorded: finished (with
plots and weights from the trial's stored output), stopped early by the scheduler, or failed with
the reason. A trial that an interrupted search left half-logged is deleted and logged afresh;
one already finished is never logged twice.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from ray.tune import Callback

from maetune.search import tracking
from maetune.search.tune_trial import TrialSetup
from maetune.trainers.config import to_dict

PER_EPOCH = tracking.PER_EPOCH


class MlflowTrialCallback(Callback):
    """Log every trial of a search as a nested MLflow run.

    Args:
        experiment: MLflow experiment name.
        parent_run_id: The search's parent run.
        setup: The search's shared trial setup (space, outputs folder).
    """

    def __init__(self, experiment: str, parent_run_id: str, setup: TrialSetup) -> None:
        self.experiment = experiment
        self.parent_run_id = parent_run_id
        self.trial_setup = setup
        self._runs: dict[str, str] = {}
        self._done: set[str] = set()
        self._client: Any = None
        self._space: Any = None

    def __getstate__(self) -> dict[str, Any]:  # Tune pickles callbacks with the experiment state
        state = self.__dict__.copy()
        state["_client"] = None
        state["_space"] = None
        return state

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = tracking.connect()
        return self._client

    def _child(self, trial: Any) -> str:
        """The child run of ``trial``: an existing one, or a new one (stale half-logged runs replaced)."""
        if trial.trial_id in self._runs:
            return self._runs[trial.trial_id]
        tags = {"maetune.trial_id": trial.trial_id, "mlflow.parentRunId": self.parent_run_id}
        for run in tracking.find_runs(self.client, self.experiment, tags):
            if run.info.status == "FINISHED" and run.data.tags.get("maetune.state") == "finished":
                self._runs[trial.trial_id] = run.info.run_id
                self._done.add(trial.trial_id)
                return run.info.run_id
            tracking.delete_run(self.client, run.info.run_id)
        if self._space is None:
            self._space = self.trial_setup.space()
        cfg = self._space.apply(trial.config)
        number = trial.config.get("optuna_number")
        run_id = tracking.start_run(
            self.client,
            self.experiment,
            f"trial-{number}-{trial.trial_id}",
            {
                "maetune.role": "trial",
                "maetune.trial_id": trial.trial_id,
                "maetune.optuna_number": str(number),
                "maetune.state": "running",
            },
            parent_run_id=self.parent_run_id,
        )
        tracking.log_params(self.client, run_id, to_dict(cfg))
        self._runs[trial.trial_id] = run_id
        return run_id

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._child(trial)

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        run_id = self._child(trial)
        if trial.trial_id in self._done or "stage" not in result:
            return
        if result.get("stage") == "pretrain" and result.get("epoch") == 0:
            reused = bool(result.get("pretrain_reused"))
            tracking.set_tags(self.client, run_id, {"maetune.pretrain": "reused" if reused else "trained"})
        row = {k: v for k, v in result.items() if k in PER_EPOCH}
        tracking.log_metrics(self.client, run_id, row, step=int(result.get("epoch", 0)))

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        run_id = self._child(trial)
        if trial.trial_id in self._done:
            return
        last = trial.last_result or {}
        if last.get("pipeline_done"):
            out = Path(self.trial_setup.outputs_dir) / f"{trial.trial_id}.pt"
            result = torch.load(out, map_location="cpu", weights_only=False)
            tracking.log_result(self.client, run_id, result, history=False)
            tracking.set_tags(self.client, run_id, {"maetune.state": "finished"})
            tracking.end_run(self.client, run_id, "FINISHED")
        else:
            tracking.log_metrics(
                self.client, run_id, {k: v for k, v in last.items() if k.endswith("_params")}
            )
            tracking.set_tags(
                self.client,
                run_id,
                {
                    "maetune.state": "stopped early",
                    "maetune.stopped_at_iteration": str(last.get("training_iteration")),
                },
            )
            tracking.end_run(self.client, run_id, "KILLED")
        self._done.add(trial.trial_id)

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        run_id = self._child(trial)
        if trial.trial_id in self._done:
            return
        reason = _error_line(trial)
        tracking.set_tags(self.client, run_id, {"maetune.state": "failed", "maetune.error": reason[:500]})
        tracking.end_run(self.client, run_id, "FAILED")
        self._done.add(trial.trial_id)


def _error_line(trial: Any) -> str:
    """The last meaningful line of a failed trial's error."""
    text = ""
    path = getattr(trial, "error_file", None) or ""
    try:
        text = Path(path).read_text() if path else ""
    except OSError:
        text = ""
    text = text or str(getattr(trial, "error_msg", "") or "")
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return lines[-1] if lines else "unknown error"
