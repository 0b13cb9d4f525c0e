"""One configuration through pretrain -> probe -> finetune, on whatever runtime it is given.

The pipeline runs all three stages in one worker group: starting a Ray Train run costs 12-20 s
on a small machine, so one group per configuration instead of three saves that twice (measured
in bench/stage_grouping.py).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from maetune.model import MaskedAutoencoder, estimate_params
from maetune.trainers.config import RunConfig, to_dict, with_geometry
from maetune.trainers.data import DataBundle, load_dataset
from maetune.trainers.finetune import finetune
from maetune.trainers.pretrain import pretrain, reconstruction_samples
from maetune.trainers.probe import probe
from maetune.trainers.runtime import Runtime

STAGES = ("pretrain", "probe", "finetune")

# Load a cached pretraining (``state``, ``history``, ``metrics``) for this config, or None; and store one.
PretrainCache = tuple[Callable[[RunConfig], dict | None], Callable[[RunConfig, dict], None]]


def parameter_counts(cfg: RunConfig, num_classes: int) -> dict[str, int]:
    """``encoder_params``, ``decoder_params``, ``head_params``, ``total_params`` (encoder + head)."""
    return {k: int(v) for k, v in estimate_params(cfg.model, cfg.head, num_classes).items()}


def _to_numpy(tree: Any) -> Any:
    """Tensors to NumPy arrays, recursively, so results pickle without torch on the reader's side."""
    if hasattr(tree, "detach"):
        return tree.detach().cpu().numpy()
    if isinstance(tree, dict):
        return {k: _to_numpy(v) for k, v in tree.items()}
    return tree


def run_pipeline(
    cfg: RunConfig,
    rt: Runtime,
    data: DataBundle | None = None,
    cache: PretrainCache | None = None,
) -> dict[str, Any]:
    """Run the three stages for one configuration and collect everything worth logging.

    Args:
        cfg: The run configuration.
        rt: The runtime (in-process or a Ray Train worker).
        data: The dataset, if the caller already loaded it.
        cache: Optional pretrained-encoder cache; a hit skips pretraining.

    Returns:
        A dict with ``config`` (the resolved config as a dict), ``metrics`` (final metrics and parameter
        counts), ``history`` (per-epoch rows of every stage), ``artifacts`` (NumPy arrays for plots),
        ``weights`` (the fine-tuned classifier's state dict as NumPy arrays), ``classes``, ``pretrain``
        (``trained`` or ``reused``) and ``seconds`` per stage.
    """
    data = data if data is not None else load_dataset(cfg.data)
    cfg = with_geometry(cfg, data.img_size, data.in_chans)
    metrics: dict[str, float] = {}
    history: list[dict[str, Any]] = []
    artifacts: dict[str, Any] = {}
    seconds: dict[str, float] = {}

    cached = cache[0](cfg) if cache is not None and rt.is_main else None
    cached = rt.broadcast_object(cached)
    if cached is None:
        out = pretrain(cfg, data, rt)
        mae_state = out.state
        if cache is not None and rt.is_main:
            cache[1](cfg, {"state": mae_state, "history": out.history, "metrics": out.metrics})
        pretrain_metrics, pretrain_history = out.metrics, out.history
        artifacts.update(out.artifacts)
        seconds["pretrain"] = out.seconds
    else:
        rt.log("[pretrain] reusing a pretrained encoder with the same encoder, pretraining and data settings")
        mae_state, pretrain_metrics, pretrain_history = cached["state"], cached["metrics"], cached["history"]
        for row in pretrain_history:  # replayed so every trial reports the same epochs in the same order
            rt.report({**row, "pretrain_reused": 1.0})
        mae = MaskedAutoencoder(cfg.model).to(rt.device)
        mae.load_state_dict(mae_state)
        artifacts["reconstructions"] = reconstruction_samples(mae, data.x_test, cfg.seed)
        seconds["pretrain"] = 0.0
    metrics.update(pretrain_metrics)
    history += pretrain_history

    out = probe(cfg, data, rt, mae_state)
    metrics.update(out.metrics)
    history += out.history
    seconds["probe"] = out.seconds
    head_state = out.state

    out = finetune(cfg, data, rt, mae_state, head_state)
    metrics.update(out.metrics)
    history += out.history
    artifacts.update(out.artifacts)
    seconds["finetune"] = out.seconds

    metrics.update(parameter_counts(cfg, data.num_classes))
    metrics.update(n_train=len(data.y_train), n_val=len(data.y_val), n_test=len(data.y_test))
    return {
        "config": to_dict(cfg),
        "metrics": metrics,
        "history": history,
        "artifacts": _to_numpy(artifacts),
        "weights": _to_numpy(out.state),
        "classes": list(data.classes),
        "pretrain": "reused" if cached is not None else "trained",
        "seconds": seconds,
    }
