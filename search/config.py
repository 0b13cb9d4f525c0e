"""Search configuration: the ``search`` section of a YAML config.

The space maps dotted run-config keys to a domain: ``{choices: [...]}`` for a categorical choice
(integers, floats or strings), ``{low: a, high: b}`` for a float range (``log: true`` for a log
scale, ``integer: true`` for an integer range). Everything else about a trial comes from the run
sections of the same file.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from maetune.trainers.config import ConfigError, RunConfig, build, load_tree, run_config_from_tree

MODES = ("single", "multi")
OBJECTIVES = ("finetune_val_auc_micro", "finetune_val_acc")
SAMPLERS = ("tpe", "nsga2", "random")


@dataclass(frozen=True)
class Domain:
    """One searched setting: either ``choices`` or a ``low``..``high`` range."""

    choices: tuple[Any, ...] | None = None
    low: float | None = None
    high: float | None = None
    log: bool = False
    integer: bool = False


@dataclass(frozen=True)
class AshaConfig:
    """ASHA early stopping (single-objective mode).

    Args:
        grace_period: Reports before a trial can be stopped; ``None`` means all pretraining and probing
            reports plus one fine-tuning epoch, so trials are judged on fine-tuning only.
        reduction_factor: Keep 1/reduction_factor of the trials at each rung.
    """

    grace_period: int | None = None
    reduction_factor: int = 2


@dataclass(frozen=True)
class SearchConfig:
    """How the search runs.

    Args:
        mode: ``single`` (maximize ``metric`` with ASHA) or ``multi`` (accuracy up, parameters down,
            NSGA-II; the result is a Pareto front).
        metric: The single objective: ``finetune_val_auc_micro`` or ``finetune_val_acc``. In multi mode
            it is the accuracy-like objective paired with ``total_params``.
        num_samples: Trials to run.
        max_concurrent_trials: Trials at once (each runs ``train.num_workers`` Ray Train workers).
        sampler: ``tpe``, ``nsga2`` or ``random``; ``None`` picks TPE (single) or NSGA-II (multi).
        seed: Sampler seed.
        param_budget: Largest allowed ``total_params`` (encoder + head); ``None`` for no limit.
        study_storage: Optuna storage URL (any SQLAlchemy URL); ``None`` means SQLite in the storage path.
        name: Search name (Tune experiment, Optuna study, MLflow parent run); ``None`` derives one.
        asha: Early-stopping settings.
        space: Dotted run-config key -> domain.
    """

    mode: str = "single"
    metric: str = "finetune_val_auc_micro"
    num_samples: int = 8
    max_concurrent_trials: int = 1
    sampler: str | None = None
    seed: int = 0
    param_budget: int | None = None
    study_storage: str | None = None
    name: str | None = None
    asha: AshaConfig = field(default_factory=AshaConfig)
    space: dict[str, Domain] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ConfigError(f"search.mode must be one of {MODES}, got {self.mode!r}")
        if self.metric not in OBJECTIVES:
            raise ConfigError(f"search.metric must be one of {OBJECTIVES}, got {self.metric!r}")
        if self.sampler is not None and self.sampler not in SAMPLERS:
            raise ConfigError(f"search.sampler must be one of {SAMPLERS}, got {self.sampler!r}")
        if self.num_samples < 1:
            raise ConfigError(f"search.num_samples must be >= 1, got {self.num_samples}")
        if self.max_concurrent_trials < 1:
            raise ConfigError(f"search.max_concurrent_trials must be >= 1, got {self.max_concurrent_trials}")
        if self.param_budget is not None and self.param_budget < 1:
            raise ConfigError(f"search.param_budget must be >= 1, got {self.param_budget}")
        if self.asha.reduction_factor < 2:
            raise ConfigError(f"search.asha.reduction_factor must be >= 2, got {self.asha.reduction_factor}")

    @property
    def sampler_name(self) -> str:
        """The sampler actually used."""
        return self.sampler or ("nsga2" if self.mode == "multi" else "tpe")


def _domain(key: str, spec: Any) -> Domain:
    if isinstance(spec, list):  # shorthand: a bare list is a choice
        spec = {"choices": spec}
    if not isinstance(spec, dict):
        raise ConfigError(f"search.space.{key} must be a list of choices or a mapping with low/high")
    dom = build(Domain, spec, prefix=f"search.space.{key}")
    if dom.choices is not None:
        if dom.low is not None or dom.high is not None:
            raise ConfigError(f"search.space.{key} has both choices and a range: give one")
        if not dom.choices:
            raise ConfigError(f"search.space.{key} has an empty list of choices")
    elif dom.low is None or dom.high is None:
        raise ConfigError(f"search.space.{key} needs choices, or both low and high")
    elif dom.low > dom.high:
        raise ConfigError(f"search.space.{key} has low {dom.low} > high {dom.high}")
    elif dom.log and dom.low <= 0:
        raise ConfigError(f"search.space.{key} is log-scaled but low {dom.low} <= 0")
    return dom


def search_config_from_tree(section: Any) -> SearchConfig:
    """Build a `SearchConfig` from the raw ``search`` section (space domains parsed strictly)."""
    section = dict(section or {})
    raw_space = section.pop("space", None) or {}
    if not isinstance(raw_space, dict):
        raise ConfigError("search.space must be a mapping of dotted keys to domains")
    cfg = build(SearchConfig, section, prefix="search")
    space = {str(k): _domain(str(k), v) for k, v in raw_space.items()}
    return SearchConfig(**{**cfg.__dict__, "space": space})


def load_search(
    path: str | None, overrides: list[str] | tuple[str, ...] = ()
) -> tuple[RunConfig, SearchConfig, dict]:
    """Load the base run config, the search config and the raw tree (kept for exact reruns)."""
    tree = load_tree(path, overrides)
    base = run_config_from_tree(tree, extra_sections=("search",))
    search = search_config_from_tree(tree.get("search"))
    return base, search, tree
