"""Run configuration: frozen dataclasses for every stage, loaded from YAML with dotted overrides.

One `RunConfig` describes one pretrain -> probe -> finetune run completely, so any result that
stores it (MLflow params, checkpoints, Tune results) can be rerun exactly. Validation happens once,
here, at the edge: unknown keys and wrongly typed values raise `ConfigError` with one line naming
the key.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml

from maetune.model.config import HeadConfig, ModelConfig
from maetune.trainers.data.config import DataConfig

T = TypeVar("T")

# Native geometry of the built-in sources, so the model can be validated before any data is read.
NATIVE_IMAGE_SIZE = {"digits": 8, "mnist-idx": 28, "lens-sim": 64}


class ConfigError(ValueError):
    """A configuration problem, phrased as one line that names the offending key."""


@dataclass(frozen=True)
class PretrainConfig:
    """MAE pretraining (AdamW, per-step warmup + cosine; lr = base_lr x batch / 256).

    Args:
        epochs: Passes over the pretraining images.
        batch_size: Global batch size (split across workers).
        base_lr: Learning rate per 256 images.
        weight_decay: AdamW weight decay (not applied to norms, biases, tokens).
        warmup_epochs: Linear warmup length, in epochs (fractions allowed).
        min_lr: Floor of the cosine schedule.
    """

    epochs: int = 10
    batch_size: int = 128
    base_lr: float = 1.5e-4
    weight_decay: float = 0.05
    warmup_epochs: float = 1.0
    min_lr: float = 0.0


@dataclass(frozen=True)
class ProbeConfig:
    """Linear probing: frozen encoder, trained MLP adapter, LARS.

    Args:
        epochs: Training epochs.
        batch_size: Global batch size.
        base_lr: LARS learning rate per 256 images.
        weight_decay: LARS weight decay.
        momentum: LARS momentum.
        trust_coefficient: LARS trust coefficient (eta).
        warmup_epochs: Linear warmup length, in epochs.
    """

    epochs: int = 10
    batch_size: int = 256
    base_lr: float = 0.1
    weight_decay: float = 0.0
    momentum: float = 0.9
    trust_coefficient: float = 0.001
    warmup_epochs: float = 1.0


@dataclass(frozen=True)
class FinetuneConfig:
    """Full fine-tuning: AdamW with separate encoder and head learning rates.

    Args:
        epochs: Training epochs.
        batch_size: Global batch size.
        encoder_lr: Encoder learning rate per 256 images.
        head_lr: Head learning rate per 256 images.
        weight_decay: AdamW weight decay (not on norms, biases, tokens).
        layer_decay: Layer-wise lr decay for the encoder (1.0 turns it off).
        warmup_epochs: Linear warmup length, in epochs.
        min_lr: Floor of the cosine schedule.
        label_smoothing: Cross-entropy label smoothing.
        shift_augment: Random translation by up to this many pixels (0 turns it off).
    """

    epochs: int = 10
    batch_size: int = 128
    encoder_lr: float = 5e-4
    head_lr: float = 1e-3
    weight_decay: float = 0.05
    layer_decay: float = 1.0
    warmup_epochs: float = 1.0
    min_lr: float = 1e-6
    label_smoothing: float = 0.0
    shift_augment: int = 0


@dataclass(frozen=True)
class ResourcesConfig:
    """Where the stages run: Ray Train workers, or in-process.

    Args:
        num_workers: Ray Train (DDP) workers per run.
        use_gpu: One GPU per worker; NCCL and bf16 autocast.
        cpus_per_worker: CPUs reserved per worker.
        bf16: Use bf16 autocast on GPU (ignored on CPU).
        storage_path: Where Ray keeps checkpoints and results (shared storage on multi-node clusters);
            ``None`` means ``./maetune-results``.
    """

    num_workers: int = 2
    use_gpu: bool = False
    cpus_per_worker: float = 1.0
    bf16: bool = True
    storage_path: str | None = None


@dataclass(frozen=True)
class TrackingConfig:
    """MLflow settings. The tracking URI itself comes from ``MLFLOW_TRACKING_URI``.

    Args:
        experiment: MLflow experiment name.
        run_name: Name of the run; ``None`` lets MLflow pick one.
    """

    experiment: str = "maetune"
    run_name: str | None = None


@dataclass(frozen=True)
class RunConfig:
    """Everything one pretrain -> probe -> finetune run needs."""

    seed: int = 0
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    head: HeadConfig = field(default_factory=HeadConfig)
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)
    probe: ProbeConfig = field(default_factory=ProbeConfig)
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)
    train: ResourcesConfig = field(default_factory=ResourcesConfig)
    mlflow: TrackingConfig = field(default_factory=TrackingConfig)

    def __post_init__(self) -> None:
        for name in ("pretrain", "probe", "finetune"):
            stage = getattr(self, name)
            if stage.epochs < 1:
                raise ConfigError(f"{name}.epochs must be >= 1, got {stage.epochs}")
            if stage.batch_size < 1:
                raise ConfigError(f"{name}.batch_size must be >= 1, got {stage.batch_size}")
        if self.train.num_workers < 1:
            raise ConfigError(f"train.num_workers must be >= 1, got {self.train.num_workers}")


# --------------------------------------------------------------------------- building from dicts


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", str(tp)).replace("typing.", "")


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Check (and minimally convert) one value against its annotated type."""
    if tp is Any:
        return value
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return _coerce(value, arg, key)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0] if errors else f"{key}: bad value {value!r}")
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key} must be a list, got {value!r}")
        (item,) = typing.get_args(tp)[:1]
        return tuple(_coerce(v, item, f"{key}[{i}]") for i, v in enumerate(value))
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, Mapping):
            raise ConfigError(f"{key} must be a mapping of settings, got {value!r}")
        return build(tp, value, prefix=key)
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key} must be true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key} must be an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, str):  # YAML 1.1 reads 1e-3 (no dot) as a string
            try:
                return float(value)
            except ValueError:
                raise ConfigError(f"{key} must be a number, got {value!r}") from None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key} must be a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key} must be a string, got {value!r}")
        return value
    raise ConfigError(f"{key}: unsupported type {_type_name(tp)}")


def build(cls: type[T], values: Mapping[str, Any], prefix: str = "") -> T:
    """Build a frozen config dataclass from a (nested) mapping, strictly.

    Args:
        cls: The dataclass type.
        values: Settings; missing keys take the dataclass defaults.
        prefix: Dotted path of this section, for error messages.

    Raises:
        ConfigError: On unknown keys, wrongly typed values, or values the dataclass refuses.
    """
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for key, value in values.items():
        dotted = f"{prefix}.{key}" if prefix else str(key)
        if key not in names:
            close = difflib.get_close_matches(str(key), names, n=1)
            hint = f" (did you mean '{prefix + '.' if prefix else ''}{close[0]}'?)" if close else ""
            raise ConfigError(f"unknown config key '{dotted}'{hint}")
        kwargs[key] = _coerce(value, hints[key], dotted)
    try:
        return cls(**kwargs)
    except ConfigError:
        raise
    except (ValueError, TypeError) as exc:
        raise ConfigError(str(exc)) from None


def to_dict(cfg: Any) -> dict[str, Any]:
    """A config dataclass as plain nested dicts/lists (YAML- and JSON-safe)."""

    def plain(v: Any) -> Any:
        if dataclasses.is_dataclass(v):
            return {f.name: plain(getattr(v, f.name)) for f in dataclasses.fields(v)}
        if isinstance(v, (list, tuple)):
            return [plain(x) for x in v]
        return v

    return plain(cfg)


def flatten(d: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested dict to dotted keys: ``{"model": {"embed_dim": 128}}`` -> ``{"model.embed_dim": 128}``."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}.{k}" if prefix else k
        if isinstance(v, Mapping):
            out.update(flatten(v, key))
        else:
            out[key] = v
    return out


def apply_override(tree: dict[str, Any], assignment: str) -> None:
    """Apply one ``dotted.key=value`` override in place; the value is parsed as YAML."""
    if "=" not in assignment:
        raise ConfigError(f"override {assignment!r} must look like key=value, e.g. model.embed_dim=256")
    key, raw = assignment.split("=", 1)
    parts = key.strip().split(".")
    if not all(parts):
        raise ConfigError(f"override key {key!r} is not a dotted key")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError:
        value = raw
    node = tree
    for part in parts[:-1]:
        nxt = node.setdefault(part, {})
        if not isinstance(nxt, dict):
            raise ConfigError(f"override {key!r}: '{part}' is a value, not a section")
        node = nxt
    node[parts[-1]] = value


def read_yaml(path: str | Path) -> dict[str, Any]:
    """Read a config file as a dict, or raise one clear line."""
    p = Path(path)
    if not p.is_file():
        preset = Path(__file__).resolve().parent.parent / "configs" / f"{p.stem}.yaml"
        if p.suffix in ("", ".yaml") and preset.is_file() and len(p.parts) <= 2:
            p = preset
        else:
            raise ConfigError(f"config file {path} does not exist")
    try:
        tree = yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise ConfigError(f"config file {p} is not valid YAML{where}") from None
    if not isinstance(tree, dict):
        raise ConfigError(f"config file {p} must hold a mapping of sections")
    return tree


def _inject_geometry(tree: dict[str, Any]) -> None:
    """Give the model the image size the data will have, so it can be validated before loading."""
    data = tree.get("data") or {}
    model = tree.setdefault("model", {})
    if not isinstance(data, dict) or not isinstance(model, dict):
        return
    size = data.get("image_size") or NATIVE_IMAGE_SIZE.get(data.get("name", "digits"))
    if size is not None and "img_size" not in model:
        model["img_size"] = size


def load_tree(path: str | Path | None, overrides: list[str] | tuple[str, ...] = ()) -> dict[str, Any]:
    """The raw config tree: the YAML file (if any) with overrides applied."""
    tree = read_yaml(path) if path else {}
    for assignment in overrides:
        apply_override(tree, assignment)
    return tree


def _absolute_data_path(tree: dict[str, Any]) -> None:
    """Resolve a relative ``data.path`` against the working directory: Ray workers run elsewhere."""
    data = tree.get("data")
    if isinstance(data, dict) and isinstance(data.get("path"), str) and "://" not in data["path"]:
        data["path"] = str(Path(data["path"]).expanduser().absolute())


def run_config_from_tree(tree: Mapping[str, Any], extra_sections: tuple[str, ...] = ()) -> RunConfig:
    """Build a `RunConfig` from a raw tree, ignoring only the named extra sections (e.g. ``search``)."""
    tree = {k: v for k, v in tree.items() if k not in extra_sections}
    tree = {k: (dict(v) if isinstance(v, Mapping) else v) for k, v in tree.items()}
    _inject_geometry(tree)
    _absolute_data_path(tree)
    return build(RunConfig, tree)


def load_run_config(path: str | Path | None, overrides: list[str] | tuple[str, ...] = ()) -> RunConfig:
    """Load a run config from YAML plus ``key=value`` overrides (a ``search`` section is allowed)."""
    return run_config_from_tree(load_tree(path, overrides), extra_sections=("search",))


def with_geometry(cfg: RunConfig, img_size: int, in_chans: int) -> RunConfig:
    """The config with the model fitted to the data's actual image size and channels."""
    if cfg.model.img_size == img_size and cfg.model.in_chans == in_chans:
        return cfg
    try:
        model = dataclasses.replace(cfg.model, img_size=img_size, in_chans=in_chans)
    except ValueError as exc:
        raise ConfigError(f"{exc} (the data gives {in_chans}x{img_size}x{img_size} images)") from None
    return dataclasses.replace(cfg, model=model)
