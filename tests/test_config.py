"""Config loading: YAML presets, dotted overrides, strict validation with one-line errors."""

from __future__ import annotations

import pytest

from maetune.trainers.config import (
    ConfigError,
    RunConfig,
    apply_override,
    build,
    flatten,
    load_run_config,
    run_config_from_tree,
    to_dict,
    with_geometry,
)

PRESETS = ["smoke", "quick", "mnist", "seed-128", "seed-256", "seed-300"]


@pytest.mark.parametrize("name", PRESETS)
def test_presets_load(name: str) -> None:
    cfg = load_run_config(f"configs/{name}.yaml")
    assert isinstance(cfg, RunConfig)
    assert cfg.model.img_size % cfg.model.patch_size == 0


def test_preset_name_without_path_resolves() -> None:
    assert load_run_config("smoke") == load_run_config("configs/smoke.yaml")


def test_override_changes_value_and_types() -> None:
    cfg = load_run_config(
        "configs/smoke.yaml",
        [
            "model.embed_dim=64",
            "pretrain.base_lr=1e-3",
            "data.pretrain_classes=[a, b]",
            "train.use_gpu=false",
        ],
    )
    assert cfg.model.embed_dim == 64
    assert cfg.pretrain.base_lr == pytest.approx(1e-3)
    assert cfg.data.pretrain_classes == ("a", "b")
    assert cfg.train.use_gpu is False


def test_round_trip_through_dict_is_exact() -> None:
    cfg = load_run_config("configs/mnist.yaml")
    assert run_config_from_tree(to_dict(cfg)) == cfg


def test_flatten_gives_dotted_keys() -> None:
    flat = flatten(to_dict(RunConfig()))
    assert flat["model.embed_dim"] == 128
    assert flat["head.depth"] == 2


@pytest.mark.parametrize(
    ("override", "fragment"),
    [
        ("model.embed_dims=3", "unknown config key 'model.embed_dims' (did you mean 'model.embed_dim'?)"),
        ("model.embed_dim=abc", "model.embed_dim must be an integer"),
        ("model.embed_dim=12.5", "model.embed_dim must be an integer"),
        ("train.use_gpu=3", "train.use_gpu must be true or false"),
        ("model.patch_size=3", "model.patch_size=3 does not divide the image size 8"),
        ("model.num_heads=3", "model.embed_dim=32 is not divisible by model.num_heads=3"),
        ("model.mask_ratio=1.0", "model.mask_ratio must be in [0, 1)"),
        ("model.mask_ratio=-0.1", "model.mask_ratio must be in [0, 1)"),
        ("data.name=imagenet", "data.name must be one of"),
        ("pretrain.epochs=0", "pretrain.epochs must be >= 1"),
        ("nonsense=1", "unknown config key 'nonsense'"),
        ("model=3", "model must be a mapping"),
    ],
)
def test_bad_values_are_one_clear_line(override: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_run_config("configs/smoke.yaml", [override])
    message = str(info.value)
    assert fragment in message
    assert "\n" not in message


def test_override_needs_equals_sign() -> None:
    with pytest.raises(ConfigError, match="key=value"):
        apply_override({}, "model.embed_dim")


def test_missing_and_invalid_files(tmp_path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_run_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML at line"):
        load_run_config(bad)


def test_with_geometry_refits_model_or_explains() -> None:
    cfg = load_run_config("configs/smoke.yaml")
    assert with_geometry(cfg, 16, 3).model.in_chans == 3
    with pytest.raises(ConfigError, match="the data gives 1x7x7 images"):
        with_geometry(cfg, 7, 1)


def test_build_rejects_unknown_nested_key() -> None:
    with pytest.raises(ConfigError, match=r"unknown config key 'head\.widht'"):
        build(RunConfig, {"head": {"widht": 3}})


@pytest.mark.parametrize("name", ["seed-128", "seed-256", "seed-300"])
def test_seed_yaml_matches_model_preset(name: str) -> None:
    from maetune.model import PRESETS

    assert load_run_config(f"configs/{name}.yaml").model == PRESETS[name]
