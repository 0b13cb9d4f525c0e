"""Stage 2: linear probing. The encoder is frozen; an MLP adapter is trained on its features with LARS.

Because the encoder is frozen and probing uses no augmentation, each split's pooled features are
computed once (sharded over workers, gathered) and the head trains on them: the same result as
running the frozen encoder every step, at a fraction of the cost.
"""

from __future__ import annotations

import torch
from torch import nn

from maetune.model import MLPHead, VisionTransformer
from maetune.trainers.config import RunConfig
from maetune.trainers.data import DataBundle
from maetune.trainers.optim import LARS, scaled_lr, warmup_cosine, weight_decay_groups
from maetune.trainers.runtime import Runtime, eval_mode
from maetune.trainers.stage import (
    StageOutput,
    Stopwatch,
    cpu_state,
    evaluate,
    per_rank_batch,
    predict,
    refresh_batchnorm,
    seed_everything,
    train_epoch,
)


def encoder_from_mae_state(cfg: RunConfig, mae_state: dict[str, torch.Tensor]) -> VisionTransformer:
    """A ViT encoder loaded with the encoder part of a pretrained MAE's weights."""
    encoder = VisionTransformer(cfg.model)
    enc_state = {k.removeprefix("encoder."): v for k, v in mae_state.items() if k.startswith("encoder.")}
    encoder.load_state_dict(enc_state)
    return encoder


def features(encoder: VisionTransformer, x: torch.Tensor, rt: Runtime) -> torch.Tensor:
    """Pooled encoder features of every image, (N, D), identical on every rank."""
    with eval_mode(encoder):
        return torch.from_numpy(predict(encoder, x, rt)).float()


def probe(cfg: RunConfig, data: DataBundle, rt: Runtime, mae_state: dict[str, torch.Tensor]) -> StageOutput:
    """Train the MLP adapter on frozen features; keep the best-on-validation head.

    Args:
        cfg: The run configuration (uses ``model``, ``head``, ``probe``, ``seed``).
        data: The labelled splits.
        rt: Where it runs.
        mae_state: The pretrained MAE's weights.

    Returns:
        ``probe_val_acc``, ``probe_val_auc_micro`` (best epoch), ``probe_test_acc``,
        ``probe_test_auc_micro``; ``state`` holds the best head's weights.
    """
    clock = Stopwatch()
    pc = cfg.probe
    seed_everything(cfg.seed + 1)
    encoder = encoder_from_mae_state(cfg, mae_state).to(rt.device)
    encoder.requires_grad_(False)
    f_train, f_val, f_test = (features(encoder, x, rt) for x in (data.x_train, data.x_val, data.x_test))
    f_train_dev, y_train = f_train.to(rt.device), data.y_train.to(rt.device)

    head = MLPHead(cfg.model.embed_dim, data.num_classes, cfg.head).to(rt.device)
    model = rt.wrap(head)
    batch = per_rank_batch(pc.batch_size, len(f_train), rt)
    steps_per_epoch = len(f_train) // (batch * rt.world_size)
    total = steps_per_epoch * pc.epochs
    peak = scaled_lr(pc.base_lr, batch * rt.world_size)
    opt = LARS(
        weight_decay_groups(head, pc.weight_decay),
        lr=peak,
        momentum=pc.momentum,
        trust_coefficient=pc.trust_coefficient,
    )
    loss_fn = nn.CrossEntropyLoss()

    warmup = round(pc.warmup_epochs * steps_per_epoch)

    def lr_at(i: int) -> float:
        return warmup_cosine(i, total, warmup, peak)

    def loss_of(idx: torch.Tensor) -> torch.Tensor:
        return loss_fn(model(f_train_dev[idx]).float(), y_train[idx])

    best, best_key, history, step = {}, (-1.0, -1.0), [], 0
    best_state = cpu_state(head)
    for epoch in range(pc.epochs):
        train_loss, step = train_epoch(
            model,
            opt,
            len(f_train),
            batch,
            cfg.seed * 1000 + 500 + epoch,
            rt,
            lr_at,
            step,
            loss_of,
        )
        refresh_batchnorm(head, f_train, rt)
        val, _ = evaluate(head, f_val, data.y_val, rt, data.num_classes)
        key = (val["acc"], val["auc_micro"])
        if key > best_key:
            best_key, best, best_state = key, val, cpu_state(head)
        row = {
            "stage": "probe",
            "epoch": epoch,
            "probe_loss": train_loss,
            "probe_val_acc": val["acc"],
            "probe_val_auc_micro": val["auc_micro"],
        }
        history.append(row)
        rt.report(row, {"stage": "probe", "epoch": epoch, "model": cpu_state(head)} if rt.is_main else None)
        rt.log(
            f"[probe] epoch {epoch + 1}/{pc.epochs}  loss {row['probe_loss']:.4f}  "
            f"val acc {val['acc']:.3f} auc {val['auc_micro']:.3f}  ({clock():.0f}s)"
        )

    head.load_state_dict(best_state)
    test, _ = evaluate(head, f_test, data.y_test, rt, data.num_classes)
    metrics = {
        "probe_val_acc": best["acc"],
        "probe_val_auc_micro": best["auc_micro"],
        "probe_test_acc": test["acc"],
        "probe_test_auc_micro": test["auc_micro"],
        "probe_test_auc_macro": test["auc_macro"],
    }
    return StageOutput(metrics, history, best_state, {}, clock())
