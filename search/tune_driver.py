"""The search driver: Ray Tune + Optuna over the MAE recipe, with MLflow parent/child runs and resume.

Single-objective mode maximizes the fine-tuned validation metric with TPE and stops bad trials
with ASHA; multi-objective mode runs NSGA-II on (accuracy up, total parameters down), whose
result is a Pareto front. The Optuna study lives in a database and the Tune experiment under the
storage path, so an interrupted search continues with ``--resume``.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import optuna
from ray import tune
from ray.tune.schedulers import ASHAScheduler, FIFOScheduler
from ray.tune.search.optuna import OptunaSearch

from maetune.search import tracking
from maetune.search.config import SearchConfig
from maetune.search.space import SearchSpace
from maetune.search.tune_callback import MlflowTrialCallback
from maetune.search.tune_trial import TrialSetup, run_trial
from maetune.trainers.config import RunConfig, to_dict, with_geometry
from maetune.trainers.data import load_dataset
from maetune.trainers.ray_worker import default_storage

TRIAL_DRIVER_CPU = 0.01  # the trial's driver only waits on its Train run; {"CPU": 0} is refused by Ray


def _sampler(search: SearchConfig) -> optuna.samplers.BaseSampler:
    kind = search.sampler_name
    if kind == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=search.seed)
    if kind == "random":
        return optuna.samplers.RandomSampler(seed=search.seed)
    return optuna.samplers.TPESampler(seed=search.seed)


def reports_per_trial(cfg: RunConfig) -> int:
    """Tune results one complete trial produces: every epoch of every stage, plus the final report."""
    return cfg.pretrain.epochs + cfg.probe.epochs + cfg.finetune.epochs + 1


def _scheduler(base: RunConfig, search: SearchConfig) -> Any:
    if search.mode == "multi":
        return FIFOScheduler()
    grace = search.asha.grace_period or base.pretrain.epochs + base.probe.epochs + 1
    return ASHAScheduler(
        time_attr="training_iteration",
        metric="objective",
        mode="max",
        max_t=reports_per_trial(base),
        grace_period=grace,
        reduction_factor=search.asha.reduction_factor,
    )


def _searcher(space: SearchSpace, search: SearchConfig, name: str, storage_url: str) -> OptunaSearch:
    if search.mode == "multi":
        # "objective" carries search.metric in every result (Tune checks searcher metrics on each one)
        metric, mode = ["objective", "total_params"], ["max", "min"]
    else:
        metric, mode = "objective", "max"
    storage = optuna.storages.RDBStorage(storage_url)
    return OptunaSearch(
        space=space.define,
        metric=metric,
        mode=mode,
        sampler=_sampler(search),
        study_name=name,
        storage=storage,
    )


def search_name(base: RunConfig, search: SearchConfig, storage: str, resume: bool) -> str:
    """The search's name: configured, the latest one of this experiment when resuming, or a new one."""
    if search.name:
        return search.name
    pointer = Path(storage) / f".latest-{base.mlflow.experiment}"
    if resume:
        if not pointer.exists():
            raise ValueError(
                f"--resume: no earlier search of experiment {base.mlflow.experiment!r} "
                f"under {storage}; give search.name to pick one"
            )
        return pointer.read_text().strip()
    name = f"{base.mlflow.experiment}-{time.strftime('%Y%m%d-%H%M%S')}"
    pointer.parent.mkdir(parents=True, exist_ok=True)
    pointer.write_text(name)
    return name


def _parent_run(
    client: Any, base: RunConfig, search: SearchConfig, space: SearchSpace, name: str, resume: bool
) -> str:
    tags = {"maetune.role": "search", "maetune.search_name": name}
    existing = tracking.find_runs(client, base.mlflow.experiment, tags)
    if existing:
        if not resume:
            raise ValueError(
                f"a search named {name!r} already exists in MLflow: use --resume or another name"
            )
        run_id = existing[0].info.run_id
        client.update_run(run_id, status="RUNNING")
        return run_id
    run_id = tracking.start_run(
        client,
        base.mlflow.experiment,
        name,
        {**tags, "maetune.mode": search.mode, "maetune.sampler": search.sampler_name},
    )
    params = {**to_dict(base), "search": {k: v for k, v in to_dict(search).items() if k != "space"}}
    tracking.log_params(client, run_id, params)
    tracking.log_params(client, run_id, {"search.space": json.dumps(space.describe(), sort_keys=True)})
    return run_id


def _warn_if_oversubscribed(base: RunConfig, search: SearchConfig) -> None:
    """Say so when the concurrent trials cannot all get their workers at once (they would queue)."""
    import ray

    per_trial = TRIAL_DRIVER_CPU + base.train.num_workers * base.train.cpus_per_worker
    have = ray.cluster_resources().get("CPU", 0.0)
    if search.max_concurrent_trials * per_trial > have + 1e-9:
        print(
            f"warning: {search.max_concurrent_trials} concurrent trials x {per_trial:g} CPU exceed "
            f"the cluster's {have:g} CPUs; Train worker groups will wait for each other",
            file=sys.stderr,
        )


def _close_orphaned_trials(storage_url: str, study_name: str) -> None:
    """Mark Optuna trials still RUNNING after the search as FAIL.

    A search killed between Optuna's ask and Tune's next experiment checkpoint leaves an asked trial
    that the restored Tune experiment never knew; the resumed search samples a replacement, so the
    orphan is closed with the reason rather than left RUNNING forever.
    """
    study = optuna.load_study(study_name=study_name, storage=storage_url)
    for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        study._storage.set_trial_user_attr(
            t._trial_id, "maetune.orphaned", "search interrupted before Tune recorded it"
        )
        study._storage.set_trial_state_values(t._trial_id, optuna.trial.TrialState.FAIL)


def run_search(
    base: RunConfig,
    search: SearchConfig,
    search_tree: dict[str, Any],
    resume: bool = False,
    address: str | None = None,
) -> dict[str, Any]:
    """Run (or resume) a search and summarize it.

    Args:
        base: The run config every trial starts from.
        search: The search settings.
        search_tree: The raw ``search`` section (stored so trials rebuild the exact space).
        resume: Continue the latest (or the named) search instead of starting a new one.
        address: Ray cluster address (``None``: ``RAY_ADDRESS`` or a local cluster).

    Returns:
        The summary (see `maetune.search.summary.summarize`) plus ``name`` and ``parent_run_id``.
    """
    from maetune.cluster.session import connect
    from maetune.search.summary import summarize

    client = tracking.connect()
    data = load_dataset(base.data)
    base = with_geometry(base, data.img_size, data.in_chans)
    space = SearchSpace(base, search, data.num_classes)
    storage = default_storage(base)
    name = search_name(base, search, storage, resume)
    exp_dir = Path(storage) / name
    exp_dir.mkdir(parents=True, exist_ok=True)
    storage_url = search.study_storage or f"sqlite:///{exp_dir / 'optuna.db'}"
    print(f"connecting to {connect(address)}", file=sys.stderr)
    parent = _parent_run(client, base, search, space, name, resume)
    print(f"search {name}: MLflow parent run {parent} at {tracking.tracking_uri()}", file=sys.stderr)
    _warn_if_oversubscribed(base, search)

    setup = TrialSetup(
        base_tree=to_dict(base),
        search_tree=dict(search_tree),
        num_classes=data.num_classes,
        outputs_dir=str(exp_dir / "outputs"),
        cache_dir=str(Path(storage) / "pretrain-cache"),
        search_name=name,
    )
    trainable = tune.with_resources(tune.with_parameters(run_trial, setup=setup), {"CPU": TRIAL_DRIVER_CPU})
    if resume and tune.Tuner.can_restore(str(exp_dir)):
        tuner = tune.Tuner.restore(
            str(exp_dir),
            trainable=trainable,
            resume_unfinished=True,
            resume_errored=False,
            restart_errored=True,
        )
    else:
        tuner = tune.Tuner(
            trainable,
            tune_config=tune.TuneConfig(
                search_alg=_searcher(space, search, name, storage_url),
                scheduler=_scheduler(base, search),
                num_samples=search.num_samples,
                max_concurrent_trials=search.max_concurrent_trials,
                # A stopped trial's actor must die: it owns the trial's Train run and its workers.
                reuse_actors=False,
            ),
            run_config=tune.RunConfig(
                name=name,
                storage_path=storage,
                callbacks=[MlflowTrialCallback(base.mlflow.experiment, parent, setup)],
            ),
        )
    try:
        tuner.fit()
    except BaseException:
        tracking.end_run(client, parent, "KILLED")
        raise
    _close_orphaned_trials(storage_url, name)
    summary = summarize(
        client, base.mlflow.experiment, parent, search, storage_url=storage_url, study_name=name
    )
    tracking.end_run(client, parent, "FINISHED")
    return {**summary, "name": name, "parent_run_id": parent}
