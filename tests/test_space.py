"""Search space: constraint-aware define-by-run sampling never yields an invalid or over-budget model."""

from __future__ import annotations

import dataclasses
import itertools
import json
from typing import Any

import optuna
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from maetune.model.config import HeadConfig, ModelConfig
from maetune.model.params import estimate_params
from maetune.search.config import search_config_from_tree
from maetune.search.space import SearchSpace, sample_configs
from maetune.trainers.config import ConfigError, RunConfig, run_config_from_tree

NUM_CLASSES = 3
LR = {"low": 1e-5, "high": 1e-2, "log": True}


def base_config(img_size: int = 32) -> RunConfig:
    """A small valid base: patch 4 divides 8, 28 and 32."""
    model = {"img_size": img_size, "patch_size": 4, "embed_dim": 32, "num_heads": 4, "depth": 2}
    model |= {"decoder_embed_dim": 16, "decoder_num_heads": 2, "decoder_depth": 1}
    return run_config_from_tree({"model": model})


def make_space(space: dict[str, Any], budget: int | None = None) -> SearchSpace:
    search = search_config_from_tree({"space": space, "param_budget": budget})
    return SearchSpace(base_config(), search, NUM_CLASSES)


def assert_valid(cfg: RunConfig, budget: int | None) -> None:
    """Independent checks: the model rebuilds, divisibility holds, the budget is kept."""
    m = ModelConfig(**dataclasses.asdict(cfg.model))
    assert (
        m.img_size % m.patch_size
        == m.embed_dim % m.num_heads
        == m.decoder_embed_dim % m.decoder_num_heads
        == 0
    )
    if budget is not None:
        assert estimate_params(m, cfg.head, NUM_CLASSES)["total_params"] <= budget


def oracle_totals(base: RunConfig, arch: dict[str, Any]) -> list[int]:
    """Total parameters of every valid architecture in ``arch``, by brute force (independent of space.py)."""
    keys = list(arch)
    values = [d["choices"] if "choices" in d else range(d["low"], d["high"] + 1) for d in arch.values()]
    totals = []
    for combo in itertools.product(*values):
        model, head = dataclasses.asdict(base.model), dataclasses.asdict(base.head)
        for key, value in zip(keys, combo, strict=True):
            section, name = key.split(".")
            (model if section == "model" else head)[name] = value
        try:
            mc, hc = ModelConfig(**model), HeadConfig(**head)
        except ValueError:
            continue
        totals.append(estimate_params(mc, hc, NUM_CLASSES)["total_params"])
    return totals


def subset(values: list[int], max_size: int) -> st.SearchStrategy[list[int]]:
    return st.lists(st.sampled_from(values), min_size=1, max_size=max_size, unique=True)


@st.composite
def spaces(draw: st.DrawFn) -> tuple[int, dict[str, Any], float | None]:
    """A random architecture space, an image size, and where to put the budget (None: no budget)."""
    arch: dict[str, Any] = {
        "model.embed_dim": {"choices": draw(subset([16, 24, 32, 48, 64, 96, 128], 3))},
        "model.num_heads": {"choices": draw(subset([1, 2, 3, 4, 6, 8], 3))},
        "model.patch_size": {"choices": draw(subset([1, 2, 3, 4, 5, 7, 8], 3))},
        "head.width": {"choices": draw(subset([16, 32, 64, 128], 2))},
    }
    lo = draw(st.integers(1, 4))
    hi = draw(st.integers(lo, 4))
    ranged = {"low": lo, "high": hi, "integer": True}
    arch["head.depth"] = draw(st.sampled_from([ranged, {"choices": list(range(lo, hi + 1))}]))
    if draw(st.booleans()):
        arch["model.decoder_embed_dim"] = {"choices": draw(subset([8, 12, 16, 24], 2))}
        arch["model.decoder_num_heads"] = {"choices": draw(subset([1, 2, 3, 4, 6], 2))}
    if draw(st.booleans()):
        arch["model.depth"] = {"low": 1, "high": draw(st.integers(1, 3)), "integer": True}
    return draw(st.sampled_from([8, 28, 32])), arch, draw(st.none() | st.floats(-0.3, 1.0))


@settings(max_examples=40, deadline=None)
@given(spaces())
def test_every_sampled_config_is_valid(case: tuple[int, dict[str, Any], float | None]) -> None:
    img_size, arch, where = case
    base = base_config(img_size)
    totals = oracle_totals(base, arch)
    budget = None
    if where is not None and totals:  # between the smallest and largest model; below it when negative
        budget = max(1, int(min(totals) + where * (max(totals) - min(totals))))
    feasible = [t for t in totals if budget is None or t <= budget]
    space_tree = {**arch, "model.mask_ratio": {"low": 0.5, "high": 0.9}, "finetune.encoder_lr": LR}
    search = search_config_from_tree({"space": space_tree, "param_budget": budget})
    if not feasible:
        with pytest.raises(ConfigError):
            SearchSpace(base, search, NUM_CLASSES)
        return
    space = SearchSpace(base, search, NUM_CLASSES)
    assert space.describe()["feasible"] == len(feasible)
    samplers = [optuna.samplers.RandomSampler(seed=0), optuna.samplers.TPESampler(seed=0, n_startup_trials=2)]
    for sampler in samplers:
        study = optuna.create_study(sampler=sampler, direction="maximize")
        for _ in range(6):
            trial = study.ask()
            assert space.define(trial) == {"optuna_number": trial.number}
            cfg = space.apply(trial.params)
            assert_valid(cfg, budget)
            study.tell(trial, float(cfg.model.embed_dim))  # gives TPE a history to model


def test_empty_space_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"search.space is empty: name at least one setting to search"):
        make_space({})


SUGGESTIONS = [
    ("model.embed_size", "model.embed_dim"),
    ("embed_dim", "model.embed_dim"),
    ("head.dept", "head.depth"),
]


@pytest.mark.parametrize(("key", "close"), SUGGESTIONS)
def test_unknown_key_suggests_a_close_match(key: str, close: str) -> None:
    with pytest.raises(ConfigError, match=rf"unknown search.space key '{key}' \(did you mean '{close}'\?\)"):
        make_space({key: [1, 2]})


BAD_VALUES = [
    ({"model.embed_dim": ["big"]}, r"search.space.model.embed_dim\[0\] must be an integer, got 'big'"),
    ({"finetune.encoder_lr": ["fast"]}, "must be a number"),
    ({"model.depth": {"low": 1, "high": 4}}, "integer setting: add integer: true"),
    ({"model.pool": {"low": 0, "high": 1}}, "model.pool takes choices"),
    ({"model.mlp_ratio": {"low": 2, "high": 4}}, "shapes the model, so it takes choices"),
    ({"model.mask_ratio": {"low": 0.5, "high": 1.0}}, r"mask_ratio=1.0 is invalid: .*\[0, 1\)"),
    ({"model.img_size": [16, 32]}, "follows the data"),
    ({"data.pretrain_classes": [["a", "b"]]}, "single values"),
]


@pytest.mark.parametrize(("space", "message"), BAD_VALUES)
def test_bad_values_are_refused(space: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        make_space(space)


HEADS = {"model.embed_dim": [16, 32], "model.num_heads": [3, 6]}
BIG = {"model.embed_dim": [64, 128], "head.depth": [1, 2]}
CONTRADICTIONS = [
    ({"model.patch_size": [5, 7]}, None, r"no model.patch_size choice in \[5, 7\] divides model.img_size=32"),
    (HEADS, None, r"no model.num_heads choice in \[3, 6\] divides any model.embed_dim choice in \[16, 32\]"),
    (
        {"model.embed_dim": [18, 30]},
        None,
        r"model.num_heads=4 divides no model.embed_dim choice in \[18, 30\]",
    ),
    (
        {"model.decoder_num_heads": [3, 5]},
        None,
        r"decoder_num_heads choice in \[3, 5\] divides model.decoder_emb",
    ),
    ({"data.image_size": [30]}, None, r"model.patch_size=4 divides no data.image_size choice in \[30\]"),
    (BIG, 1000, r"param_budget=1,000 is below the smallest model .* at model.embed_dim=64, head.depth=1$"),
    ({"finetune.encoder_lr": LR}, 10, r"below the smallest model in search.space: .* at base values"),
    ({"model.depth": [0]}, None, r"every combination of model.depth fails, e.g. model.depth must be >= 1"),
]


@pytest.mark.parametrize(("space", "budget", "message"), CONTRADICTIONS)
def test_contradictory_space_names_the_constraint(
    space: dict[str, Any], budget: int | None, message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        make_space(space, budget)


def test_too_many_combinations_are_refused_before_enumerating() -> None:
    wide = {"low": 1, "high": 1000, "integer": True}
    with pytest.raises(
        ConfigError, match=r"1,000,000 architecture combinations, over 200,000: model.embed_dim"
    ):
        make_space({"model.embed_dim": wide, "head.width": wide})


def test_narrowed_choices_use_derived_names_that_round_trip() -> None:
    space = make_space({"model.embed_dim": [16, 24], "model.num_heads": [2, 3, 8]})  # 3 divides only 24
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    names = set()
    for _ in range(30):
        trial = study.ask()
        assert space.define(trial) == {"optuna_number": trial.number}
        names |= set(trial.params)
        overrides = space.to_overrides({**trial.params, "optuna_number": trial.number})
        assert set(overrides) == {"model.embed_dim", "model.num_heads"}
        assert_valid(space.apply(trial.params), None)
    assert names == {"model.embed_dim", "model.num_heads", "model.num_heads|2,8"}
    params = {"model.embed_dim": 16, "model.num_heads|2,8": 8, "optuna_number": 3}
    assert space.to_overrides(params) == {"model.embed_dim": 16, "model.num_heads": 8}
    assert space.apply(params).model.num_heads == 8
    with pytest.raises(ConfigError, match=r"'model.depth' is not in this search space"):
        space.to_overrides({"model.depth": 3})


def test_long_narrowed_sets_get_short_derived_names() -> None:
    space = make_space(
        {"model.embed_dim": [64, 96], "model.num_heads": {"low": 1, "high": 64, "integer": True}}
    )
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(10):
        trial = study.ask()
        space.define(trial)
        assert all(len(name) < 100 for name in trial.params)
        assert_valid(space.apply(trial.params), None)


def test_log_floats_and_ints_stay_in_bounds() -> None:
    epochs = {"low": 1, "high": 5, "integer": True}
    space = make_space(
        {"finetune.encoder_lr": {"low": 1e-6, "high": 1e-2, "log": True}, "finetune.epochs": epochs}
    )
    configs = sample_configs(space, 200, seed=0)
    lrs = [c.finetune.encoder_lr for c in configs]
    assert all(1e-6 <= lr <= 1e-2 for lr in lrs)
    assert sum(lr < 1e-4 for lr in lrs) > 60  # log scale: half below the geometric middle (uniform: ~1%)
    assert all(isinstance(c.finetune.epochs, int) for c in configs)
    assert {c.finetune.epochs for c in configs} == {1, 2, 3, 4, 5}


def test_choices_vary_across_trials() -> None:
    tree = {"model.embed_dim": [16, 32, 64], "model.patch_size": [2, 4, 8], "head.depth": [1, 2, 3]}
    space = make_space({**tree, "model.pool": ["cls", "avg"], "model.mask_ratio": {"low": 0.5, "high": 0.9}})
    configs = sample_configs(space, 30, seed=0)
    assert len({c.model.embed_dim for c in configs}) == len({c.model.patch_size for c in configs}) == 3
    assert len({c.head.depth for c in configs}) == 3
    assert len({c.model.pool for c in configs}) == 2
    assert len({c.model.mask_ratio for c in configs}) == 30


def test_budget_narrows_but_keeps_every_reachable_choice() -> None:
    tree = {"model.embed_dim": [16, 128], "head.width": [16, 512], "head.depth": [1, 2]}
    only_128 = make_space({**tree, "model.embed_dim": [128]})
    budget = only_128.describe()["total_params_range"][0]  # embed 128 fits with its smallest head only
    space = make_space(tree, budget)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen, names = set(), set()
    for _ in range(40):
        trial = study.ask()
        space.define(trial)
        cfg = space.apply(trial.params)
        assert_valid(cfg, budget)
        seen.add(cfg.model.embed_dim)
        names |= set(trial.params)
    assert seen == {16, 128}
    assert {"head.depth|1", "head.width"} <= names  # embed 128: one layer, and then any width fits
    with pytest.raises(ConfigError, match=r"exceed search.param_budget"):
        space.apply({"model.embed_dim": 128, "head.width": 512, "head.depth": 2})


def test_searched_image_size_sets_the_model_size() -> None:
    space = make_space({"data.image_size": [28, 32], "model.patch_size": [7, 8]})
    for cfg in sample_configs(space, 10, seed=0):
        assert cfg.model.img_size == cfg.data.image_size
        assert_valid(cfg, None)


def test_describe_is_json_safe_and_lists_unreachable_values() -> None:
    depth = {"low": 1, "high": 2, "integer": True}
    space = make_space({"model.patch_size": [4, 5], "finetune.encoder_lr": LR, "head.depth": depth})
    info = json.loads(json.dumps(space.describe()))
    assert info["unreachable"] == {"model.patch_size": [5]}
    assert info["space"]["finetune.encoder_lr"]["log"] is True
    assert info["architecture_order"] == ["model.patch_size", "head.depth"]
    assert info["combinations"] == 4 and info["feasible"] == 2


def test_works_with_ray_optuna_search_without_a_cluster() -> None:
    ray = pytest.importorskip("ray")
    from ray.tune.search.optuna import OptunaSearch

    space = make_space({"model.embed_dim": [16, 24], "model.num_heads": [2, 3, 8], "finetune.encoder_lr": LR})
    searcher = OptunaSearch(space=space.define, metric="x", mode="max", seed=0)
    for i in range(6):
        config = searcher.suggest(f"trial_{i}")
        assert config["optuna_number"] == i
        assert_valid(space.apply(config), None)
        searcher.on_trial_complete(f"trial_{i}", {"x": float(i)})
    assert not ray.is_initialized()
