"""The search space: `SearchConfig.space` checked against the run config and sampled define-by-run.

Architecture keys (all that change validity or parameter counts) are discrete: choices, or an integer
range as its set of integers. Every combination is checked once at construction (`estimate_params`, no
model built); trials sample them in a fixed order, each step narrowed to values that still have a valid
completion, so no trial is invalid or over budget. Optuna forbids a categorical's choices from changing,
so a narrowed set is suggested as ``"model.num_heads|2,8"``, which `SearchSpace.to_overrides` maps back.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import itertools
import math
import types
import typing
from typing import Any

import optuna

from maetune.model.config import HeadConfig, ModelConfig
from maetune.model.params import estimate_params
from maetune.search.config import Domain, SearchConfig
from maetune.trainers.config import ConfigError, RunConfig, build, flatten, run_config_from_tree, to_dict

# Sampling order of the architecture keys; the enumeration relies on every ``head.*`` key coming last.
ARCH_ORDER = (
    *("data.image_size", "model.patch_size", "model.embed_dim", "model.num_heads", "model.depth"),
    *("model.mlp_ratio", "model.pool", "model.decoder_embed_dim", "model.decoder_num_heads"),
    *("model.decoder_depth", "head.norm", "head.depth", "head.width"),
)
MAX_COMBOS = 200_000
SEP = "|"
NUMBER_KEY = "optuna_number"
FOLLOWS_DATA = {"model.img_size": "search data.image_size instead", "model.in_chans": "it is the data's"}
SCALARS = (type(None), bool, int, float, str)


@dataclasses.dataclass(frozen=True)
class _Key:
    """One checked searched setting: coerced ``choices`` (or ``None`` for a range)."""

    domain: Domain
    choices: tuple[Any, ...] | None

    @property
    def values(self) -> tuple[Any, ...]:
        """The choices, or the range's two ends (integers for an integer range)."""
        d = self.domain
        return self.choices or ((int(d.low), int(d.high)) if d.integer else (d.low, d.high))


def _check_key(base: RunConfig, key: str, dom: Domain) -> _Key:
    """Check one key and its domain against the run config's fields; coerce the choices."""
    leaves = flatten(to_dict(base))
    if key not in leaves:
        close = [k for k in leaves if k.endswith("." + key)] or difflib.get_close_matches(key, leaves, n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise ConfigError(f"unknown search.space key '{key}'{hint}")
    if key in FOLLOWS_DATA:
        raise ConfigError(f"search.space.{key} follows the data and cannot be searched: {FOLLOWS_DATA[key]}")
    section, _, name = key.rpartition(".")
    tp = typing.get_type_hints(type(getattr(base, section)) if section else RunConfig)[name]
    if dom.choices is None:
        union = typing.get_origin(tp) in (typing.Union, types.UnionType)
        kind = next(a for a in typing.get_args(tp) if a is not type(None)) if union else tp
        if kind not in (int, float):
            raise ConfigError(f"search.space.{key} takes choices, not a low/high range")
        if dom.integer and not (float(dom.low).is_integer() and float(dom.high).is_integer()):
            raise ConfigError(f"search.space.{key} is an integer range but low/high are not whole numbers")
        if kind is int and not dom.integer:
            raise ConfigError(f"search.space.{key} is an integer setting: add integer: true or give choices")
        if key in ARCH_ORDER and not dom.integer:
            raise ConfigError(f"search.space.{key} shapes the model, so it takes choices, not a float range")
        if key in ARCH_ORDER:  # a ranged architecture integer is its set of integers
            return _Key(dom, tuple(range(int(dom.low), int(dom.high) + 1)))
        return _Key(dom, None)
    probe = dataclasses.make_dataclass("Probe", [(name, tuple[tp, ...])])  # type-checks every choice
    try:
        values = getattr(build(probe, {name: list(dom.choices)}, prefix=section), name)
    except ConfigError as exc:
        raise ConfigError(f"search.space.{exc}") from None
    if any(not isinstance(v, SCALARS) for v in values) or (key == "data.image_size" and None in values):
        raise ConfigError(f"search.space.{key}: choices must be single values (and image sizes not null)")
    values = list(dict.fromkeys(values))
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        values.sort()
    return _Key(dom, tuple(values))


class SearchSpace:
    """A checked, constraint-aware search space over a base run config.

    Args:
        base: The run config every trial starts from (unsearched keys keep its values).
        search: The search settings; ``search.space`` and ``search.param_budget`` are used here.
        num_classes: Number of classes (the head's output size counts toward the budget).

    Raises:
        ConfigError: Empty space, unknown key, bad value, too many combinations, or no valid combination.
    """

    def __init__(self, base: RunConfig, search: SearchConfig, num_classes: int) -> None:
        if not search.space:
            raise ConfigError("search.space is empty: name at least one setting to search")
        self.base, self.search, self.num_classes, self.budget = base, search, num_classes, search.param_budget
        self._keys = {k: _check_key(base, k, d) for k, d in search.space.items()}
        self.arch = [k for k in ARCH_ORDER if k in self._keys and self._keys[k].choices is not None]
        self._free = [k for k in self._keys if k not in self.arch]
        self._check_free()
        self._enumerate()

    def _build(self, overrides: dict[str, Any]) -> RunConfig:
        """The base config with dotted overrides applied, validated again from the tree."""
        tree = to_dict(self.base)
        for key, value in overrides.items():
            section, _, name = key.rpartition(".")
            (tree[section] if section else tree)[name] = value
            if key == "data.image_size":  # the model is fitted to the data's size
                tree["model"]["img_size"] = value
        return run_config_from_tree(tree)

    def _check_free(self) -> None:
        """Every choice and range end of the other keys must be valid alone; the ranges also together."""
        ranged = [k for k in self._free if self._keys[k].choices is None]
        probes = [({k: v}, f"search.space.{k}={v!r}") for k in self._free for v in self._keys[k].values]
        for i, end in enumerate(("low", "high") if len(ranged) > 1 else ()):
            together = {k: self._keys[k].values[i] for k in ranged}
            probes.append((together, f"search.space with {', '.join(ranged)} all at {end}"))
        for overrides, what in probes:
            try:
                self._build(overrides)
            except ConfigError as exc:
                raise ConfigError(f"{what} is invalid: {exc}") from None

    def _configs(self, values: dict[str, Any]) -> tuple[ModelConfig | str, HeadConfig | str]:
        """Model and head configs (or their errors) for architecture values; unsearched keys: base."""
        model, head = to_dict(self.base.model), to_dict(self.base.head)
        for key, value in values.items():
            section, _, name = key.partition(".")
            if section == "head":
                head[name] = value
            else:
                model["img_size" if section == "data" else name] = value
        out: list[Any] = []
        for cls, kwargs in ((ModelConfig, model), (HeadConfig, head)):
            try:
                out.append(cls(**kwargs))
            except ValueError as exc:
                out.append(str(exc))
        return out[0], out[1]

    def _enumerate(self) -> None:
        """Find every valid architecture combination; index the allowed values by prefix."""
        lists = [self._keys[k].choices for k in self.arch]
        self.combinations = n = math.prod(len(v) for v in lists)
        if n > MAX_COMBOS:
            sizes = ", ".join(f"{k} ({len(v)})" for k, v in zip(self.arch, lists, strict=True))
            raise ConfigError(f"search.space: {n:,} architecture combinations, over {MAX_COMBOS:,}: {sizes}")
        split = sum(not k.startswith("head.") for k in self.arch)
        parts = [(self.arch[:split], lists[:split]), (self.arch[split:], lists[split:])]
        models, heads = (
            {c: self._configs(dict(zip(keys, c, strict=True)))[i] for c in itertools.product(*vals)}
            for i, (keys, vals) in enumerate(parts)
        )
        errors = [e for e in (*models.values(), *heads.values()) if isinstance(e, str)]
        feasible, totals, smallest = [], [], None
        for (mk, model), (hk, head) in itertools.product(models.items(), heads.items()):
            if isinstance(model, str) or isinstance(head, str):
                continue
            total = estimate_params(model, head, self.num_classes)["total_params"]
            if smallest is None or total < smallest[0]:
                smallest = (total, mk + hk)
            if self.budget is None or total <= self.budget:
                feasible.append(mk + hk)
                totals.append(total)
        if not feasible:
            raise ConfigError(self._diagnose(errors, smallest))
        nxt: dict[tuple, dict] = {}
        for combo in feasible:  # lexicographic, so each allowed set keeps the declared order
            for i in range(len(combo)):
                nxt.setdefault(combo[:i], {})[combo[i]] = None
        self._next = {prefix: tuple(allowed) for prefix, allowed in nxt.items()}
        used = [{c[i] for c in feasible} for i in range(len(self.arch))]
        self._reachable = {k: tuple(v for v in lists[i] if v in used[i]) for i, k in enumerate(self.arch)}
        self._unreachable = {k: [v for v in lists[i] if v not in used[i]] for i, k in enumerate(self.arch)}
        self.feasible, self.params_range = len(feasible), (min(totals), max(totals))

    def _diagnose(self, errors: list[str], smallest: tuple[int, tuple] | None) -> str:
        """One line naming the constraint that leaves no valid architecture."""
        vals = {f"model.{k}": (v,) for k, v in to_dict(self.base.model).items()}
        vals.update({k: self._keys[k].choices for k in self.arch})

        def desc(k: str, lead: str) -> str:
            return f"{lead}{k} choice in {list(vals[k])}" if k in self.arch else f"{k}={vals[k][0]}"

        img = "data.image_size" if "data.image_size" in self.arch else "model.img_size"
        for small, big in (
            ("model.patch_size", img),
            ("model.num_heads", "model.embed_dim"),
            ("model.decoder_num_heads", "model.decoder_embed_dim"),
        ):
            if not any(b % s == 0 for s in vals[small] if s > 0 for b in vals[big]):
                verb = "divides" if small in self.arch else "divides no"
                big_desc = desc(big, "any " if small in self.arch else "")
                return f"search.space leaves no valid model: {desc(small, 'no ')} {verb} {big_desc}"
        if smallest is not None:
            at = ", ".join(f"{k}={v}" for k, v in zip(self.arch, smallest[1], strict=True)) or "base values"
            least = f"{smallest[0]:,} parameters (encoder + head) at {at}"
            return f"search.param_budget={self.budget:,} is below the smallest model in search.space: {least}"
        keys = ", ".join(self.arch)
        return f"search.space leaves no valid model: every combination of {keys} fails, e.g. {errors[0]}"

    def define(self, trial: optuna.Trial) -> dict[str, Any]:
        """Define-by-run space for `OptunaSearch(space=...)`: suggest every key, return the constants.

        Args:
            trial: The Optuna trial (or Ray's capturing wrapper around it).

        Returns:
            ``{"optuna_number": trial.number}``; the sampled values are the trial's params.
        """
        prefix: tuple = ()
        for key in self.arch:
            allowed = self._next[prefix]
            label = ",".join(map(str, allowed))  # storages cap names (512 characters): long sets get a digest
            label = label if len(label) <= 64 else hashlib.sha1(label.encode()).hexdigest()[:12]
            name = key if allowed == self._reachable[key] else f"{key}{SEP}{label}"
            prefix += (trial.suggest_categorical(name, allowed),)
        for key in self._free:
            spec = self._keys[key]
            if spec.choices is not None:
                trial.suggest_categorical(key, spec.choices)
            elif spec.domain.integer:
                trial.suggest_int(key, *spec.values, log=spec.domain.log)
            else:
                trial.suggest_float(key, *spec.values, log=spec.domain.log)
        return {NUMBER_KEY: trial.number}

    def to_overrides(self, params: dict[str, Any]) -> dict[str, Any]:
        """Dotted run-config keys -> values, from a trial's params (derived names and ``optuna_number`` ok).

        Raises:
            ConfigError: A parameter that is not in this space.
        """
        out = {name.split(SEP, 1)[0]: value for name, value in params.items() if name != NUMBER_KEY}
        unknown = [name for name in params if name != NUMBER_KEY and name.split(SEP, 1)[0] not in self._keys]
        if unknown:
            raise ConfigError(f"'{unknown[0]}' is not in this search space ({', '.join(self._keys)})")
        return out

    def apply(self, params: dict[str, Any]) -> RunConfig:
        """The base config with a trial's params applied, validated again (budget included).

        Args:
            params: A trial's params or Tune config (see `to_overrides`).

        Raises:
            ConfigError: An invalid value, or a model over ``search.param_budget``.
        """
        cfg = self._build(self.to_overrides(params))
        total = estimate_params(cfg.model, cfg.head, self.num_classes)["total_params"]
        if self.budget is not None and total > self.budget:
            raise ConfigError(f"{total:,} parameters exceed search.param_budget={self.budget:,}")
        return cfg

    def describe(self) -> dict[str, Any]:
        """The checked space as JSON-safe data (for logging as a param or artifact)."""
        space = {k: dataclasses.asdict(spec.domain) for k, spec in self._keys.items()}
        for key, spec in self._keys.items():
            if spec.domain.choices is not None:
                space[key] = {"choices": list(spec.choices)}  # as checked: coerced, deduplicated, sorted
        return {
            "space": space,
            "architecture_order": list(self.arch),
            "param_budget": self.budget,
            "num_classes": self.num_classes,
            "img_size": self.base.model.img_size,
            "combinations": self.combinations,
            "feasible": self.feasible,
            "unreachable": {k: v for k, v in self._unreachable.items() if v},  # never sampled
            "total_params_range": list(self.params_range),
        }


def sample_configs(space: SearchSpace, n: int, seed: int = 0) -> list[RunConfig]:
    """Draw ``n`` configs with an in-memory random Optuna study (tests, dry runs).

    Args:
        space: The search space.
        n: Number of configs.
        seed: Sampler seed.
    """
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    trials = [study.ask() for _ in range(n)]
    for trial in trials:
        space.define(trial)
    return [space.apply(trial.params) for trial in trials]
