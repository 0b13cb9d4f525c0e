"""Stage 3: full fine-tuning of encoder + head with AdamW and two learning rates.

The head starts from the probe's adapter (LP-FT: probing first keeps the randomly initialized
head from wrecking the pretrained features in the first fine-tuning steps).
"""

from __future__ import annotations

import torch
from torch import nn

from maetune.model import Classifier, MLPHead
from maetune.trainers.config import RunConfig
from maetune.trainers.data import DataBundle, augment_shift
from maetune.trainers.metrics import confusion
from maetune.trainers.optim import finetune_groups, scaled_lr, warmup_cosine
from maetune.trainers.probe import encoder_from_mae_state
from maetune.trainers.runtime import Runtime
from maetune.trainers.stage import (
    StageOutput,
    Stopwatch,
    cpu_state,
    evaluate,
    make_generator,
    per_rank_batch,
    refresh_batchnorm,
    seed_everything,
    train_epoch,
)


def build_from_stages(
    cfg: RunConfig, num_classes: int, mae_state: dict, head_state: dict | None
) -> Classifier:
    """The classifier assembled from the pretrained encoder and (if given) the probed head."""
    head = MLPHead(cfg.model.embed_dim, num_classes, cfg.head)
    if head_state is not None:
        head.load_state_dict(head_state)
    return Classifier(encoder_from_mae_state(cfg, mae_state), head)


def finetune(
    cfg: RunConfig, data: DataBundle, rt: Runtime, mae_state: dict, head_state: dict | None = None
) -> StageOutput:
    """Fine-tune the whole classifier; keep the best-on-validation weights and test them.

    Args:
        cfg: The run configuration (uses ``model``, ``head``, ``finetune``, ``seed``).
        data: The labelled splits.
        rt: Where it runs.
        mae_state: The pretrained MAE's weights (the encoder part is used).
        head_state: The probed head's weights, or ``None`` for a fresh head.

    Returns:
        ``finetune_val_acc``/``finetune_val_auc_micro`` of the best epoch and ``test_acc``,
        ``test_auc_micro``, ``test_auc_macro``, ``test_auc_class_<k>``; ``state`` holds the classifier,
        ``artifacts`` the test probabilities, labels and confusion matrix.
    """
    clock = Stopwatch()
    fc = cfg.finetune
    seed_everything(cfg.seed + 2)
    clf = build_from_stages(cfg, data.num_classes, mae_state, head_state).to(rt.device)
    model = rt.wrap(clf)
    x_train, y_train = data.x_train.to(rt.device), data.y_train.to(rt.device)

    batch = per_rank_batch(fc.batch_size, len(x_train), rt)
    steps_per_epoch = len(x_train) // (batch * rt.world_size)
    total = steps_per_epoch * fc.epochs
    global_batch = batch * rt.world_size
    head_lr, encoder_lr = scaled_lr(fc.head_lr, global_batch), scaled_lr(fc.encoder_lr, global_batch)
    groups = finetune_groups(
        clf.encoder,
        clf.head,
        encoder_lr=encoder_lr,
        head_lr=head_lr,
        weight_decay=fc.weight_decay,
        layer_decay=fc.layer_decay,
    )
    opt = torch.optim.AdamW(groups, lr=head_lr)
    loss_fn = nn.CrossEntropyLoss(label_smoothing=fc.label_smoothing)
    aug_gen = make_generator(cfg.seed * 31 + rt.rank, rt.device)

    warmup, floor = round(fc.warmup_epochs * steps_per_epoch), fc.min_lr * global_batch / 256

    def lr_at(i: int) -> float:
        return warmup_cosine(i, total, warmup, head_lr, floor)

    def loss_of(idx: torch.Tensor) -> torch.Tensor:
        xb = x_train[idx]  # (b, C, H, W)
        if fc.shift_augment:
            xb = augment_shift(xb, fc.shift_augment, aug_gen)
        return loss_fn(model(xb).float(), y_train[idx])

    best, best_key, history, step = {}, (-1.0, -1.0), [], 0
    best_state = cpu_state(clf)
    for epoch in range(fc.epochs):
        train_loss, step = train_epoch(
            model,
            opt,
            len(x_train),
            batch,
            cfg.seed * 1000 + 900 + epoch,
            rt,
            lr_at,
            step,
            loss_of,
        )
        refresh_batchnorm(clf, data.x_train, rt)
        val, _ = evaluate(clf, data.x_val, data.y_val, rt, data.num_classes)
        key = (val["acc"], val["auc_micro"])
        if key > best_key:
            best_key, best, best_state = key, val, cpu_state(clf)
        row = {
            "stage": "finetune",
            "epoch": epoch,
            "finetune_loss": train_loss,
            "finetune_val_acc": val["acc"],
            "finetune_val_auc_micro": val["auc_micro"],
        }
        history.append(row)
        rt.report(row, {"stage": "finetune", "epoch": epoch, "model": cpu_state(clf)} if rt.is_main else None)
        rt.log(
            f"[finetune] epoch {epoch + 1}/{fc.epochs}  loss {row['finetune_loss']:.4f}  "
            f"val acc {val['acc']:.3f} auc {val['auc_micro']:.3f}  ({clock():.0f}s)"
        )

    clf.load_state_dict(best_state)
    test, probs = evaluate(clf, data.x_test, data.y_test, rt, data.num_classes)
    metrics = {
        "finetune_val_acc": best["acc"],
        "finetune_val_auc_micro": best["auc_micro"],
        "finetune_val_auc_macro": best["auc_macro"],
    }
    metrics.update({f"test_{k}": v for k, v in test.items()})
    labels = data.y_test.numpy()
    artifacts = {
        "test_probs": probs,
        "test_labels": labels,
        "confusion": confusion(probs, labels, data.num_classes),
    }
    return StageOutput(metrics, history, best_state, artifacts, clock())
