"""Stage 1: masked-autoencoder pretraining on the (unlabeled) pretraining images."""

from __future__ import annotations

import math

import torch

from maetune.model import MaskedAutoencoder
from maetune.trainers.config import RunConfig
from maetune.trainers.data import DataBundle, shard_indices
from maetune.trainers.optim import scaled_lr, warmup_cosine, weight_decay_groups
from maetune.trainers.runtime import Runtime, eval_mode
from maetune.trainers.stage import (
    StageOutput,
    Stopwatch,
    cpu_state,
    make_generator,
    per_rank_batch,
    seed_everything,
    train_epoch,
)

RECON_SAMPLES = 8


def _pretrain_split(
    data: DataBundle, x: torch.Tensor, y: torch.Tensor, classes: tuple[str, ...] | None
) -> torch.Tensor:
    """Images of ``x`` whose class feeds pretraining."""
    if not classes:
        return x
    keep = torch.tensor([data.classes.index(c) for c in classes])
    return x[torch.isin(y, keep)]


def reconstruction_loss(mae: MaskedAutoencoder, x: torch.Tensor, rt: Runtime, seed: int) -> float:
    """Mean masked-patch loss over ``x`` (sharded over ranks) with a fixed masking seed."""
    idx = shard_indices(len(x), rt.rank, rt.world_size)
    gen = make_generator(seed + rt.rank, rt.device)
    total, count = 0.0, 0.0
    with eval_mode(mae):
        for start in range(0, len(idx), 256):
            xb = x[idx[start : start + 256]].to(rt.device)
            with rt.autocast():
                loss, _, _ = mae(xb, generator=gen)
            total += float(loss) * len(xb)
            count += len(xb)
    return rt.all_mean(total, count)


def reconstruction_samples(mae: MaskedAutoencoder, x: torch.Tensor, seed: int) -> dict[str, torch.Tensor]:
    """Original, masked and reconstructed versions of the first few images, for the grid plot."""
    xb = x[:RECON_SAMPLES].to(next(mae.parameters()).device)
    gen = make_generator(seed, xb.device)
    with eval_mode(mae):
        _, pred, mask = mae(xb, generator=gen)
        recon = mae.reconstruct(xb, pred.float(), mask)
        masked = mae.masked_input(xb, mask)
    return {"original": xb.cpu(), "masked": masked.cpu(), "reconstruction": recon.cpu()}


def pretrain(cfg: RunConfig, data: DataBundle, rt: Runtime) -> StageOutput:
    """Train the MAE; keep the weights with the lowest validation reconstruction loss.

    Args:
        cfg: The run configuration (uses ``model``, ``pretrain``, ``data.pretrain_classes``, ``seed``).
        data: The dataset; pretraining uses the training images of the pretraining classes.
        rt: Where it runs.

    Returns:
        ``pretrain_loss`` (last epoch's training loss), ``pretrain_val_loss`` and ``pretrain_test_loss``
        (best weights); ``state`` holds the whole MAE's best weights, ``artifacts`` a reconstruction grid.
    """
    clock = Stopwatch()
    pc = cfg.pretrain
    seed_everything(cfg.seed)
    mae = MaskedAutoencoder(cfg.model).to(rt.device)
    model = rt.wrap(mae)
    x_train = _pretrain_split(data, data.x_train, data.y_train, cfg.data.pretrain_classes).to(rt.device)
    x_val = _pretrain_split(data, data.x_val, data.y_val, cfg.data.pretrain_classes)
    x_test = _pretrain_split(data, data.x_test, data.y_test, cfg.data.pretrain_classes)

    batch = per_rank_batch(pc.batch_size, len(x_train), rt)
    steps_per_epoch = len(x_train) // (batch * rt.world_size)
    total = steps_per_epoch * pc.epochs
    peak = scaled_lr(pc.base_lr, batch * rt.world_size)
    no_decay = {f"encoder.{n}" for n in mae.encoder.no_weight_decay()}
    opt = torch.optim.AdamW(weight_decay_groups(mae, pc.weight_decay, no_decay), lr=peak, betas=(0.9, 0.95))
    mask_gen = make_generator(cfg.seed * 7919 + rt.rank, rt.device)

    warmup = round(pc.warmup_epochs * steps_per_epoch)

    def lr_at(i: int) -> float:
        return warmup_cosine(i, total, warmup, peak, pc.min_lr)

    def loss_of(idx: torch.Tensor) -> torch.Tensor:
        loss, _, _ = model(x_train[idx], generator=mask_gen)  # x_train[idx]: (b, C, H, W)
        return loss

    best_val, best_state, history, step = math.inf, cpu_state(mae), [], 0
    for epoch in range(pc.epochs):
        train_loss, step = train_epoch(
            model,
            opt,
            len(x_train),
            batch,
            cfg.seed * 1000 + epoch,
            rt,
            lr_at,
            step,
            loss_of,
        )
        val_loss = reconstruction_loss(mae, x_val, rt, cfg.seed)
        if val_loss < best_val:
            best_val, best_state = val_loss, cpu_state(mae)
        row = {
            "stage": "pretrain",
            "epoch": epoch,
            "pretrain_loss": train_loss,
            "pretrain_val_loss": val_loss,
        }
        history.append(row)
        rt.report(row, {"stage": "pretrain", "epoch": epoch, "model": cpu_state(mae)} if rt.is_main else None)
        rt.log(
            f"[pretrain] epoch {epoch + 1}/{pc.epochs}  loss {train_loss:.4f}  "
            f"val {val_loss:.4f}  ({clock():.0f}s)"
        )

    mae.load_state_dict(best_state)
    test_loss = reconstruction_loss(mae, x_test, rt, cfg.seed + 1)
    metrics = {
        "pretrain_loss": history[-1]["pretrain_loss"],
        "pretrain_val_loss": best_val,
        "pretrain_test_loss": test_loss,
    }
    artifacts = {"reconstructions": reconstruction_samples(mae, x_test, cfg.seed)} if rt.is_main else {}
    return StageOutput(metrics, history, best_state, artifacts, clock())
