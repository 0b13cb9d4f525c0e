"""How separable are the simulated lensing classes? Logistic regression on raw pixels vs a small CNN.

The substructure must be learnable (a from-scratch CNN well above chance) without a shortcut that a
linear model on raw pixels finds (it should stay low, as linear probes do on the real DeepLense data).
Simulates ``--per-class`` images per class (default 1000), splits 70/15/15 stratified, trains both on
CPU, prints the accuracies and writes ``bench/results/lens_sim_separability.json``.

    python bench/lens_sim_separability.py [--per-class 1000] [--minutes 4] [--data DIR]
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler
from torch import nn

from maetune.trainers.data.lensing import CLASSES, simulate

RESULTS = Path(__file__).parent / "results" / "lens_sim_separability.json"


def load_set(root: Path) -> tuple[np.ndarray, np.ndarray]:
    """Images ``(N, S, S)`` float32 and labels (index in ``CLASSES``) of a simulated set."""
    images, labels = [], []
    for label, kind in enumerate(CLASSES):
        for path in sorted((root / kind).glob("*.npy")):
            images.append(np.load(path).astype(np.float32))
            labels.append(label)
    return np.stack(images), np.array(labels)


def split(labels: np.ndarray, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Stratified 70/15/15 train/val/test indices."""
    index = np.arange(len(labels))
    train, rest = train_test_split(index, test_size=0.3, stratify=labels, random_state=seed)
    val, test = train_test_split(rest, test_size=0.5, stratify=labels[rest], random_state=seed)
    return train, val, test


def logistic(x: np.ndarray, y: np.ndarray, parts: tuple[np.ndarray, ...]) -> dict:
    """Raw-pixel logistic regression, C chosen on validation; test accuracy of the best C."""
    train, val, test = parts
    flat = x.reshape(len(x), -1)
    scaler = StandardScaler().fit(flat[train])
    feats = scaler.transform(flat)
    best = (-1.0, None, None)
    for c in (1e-4, 1e-3, 1e-2, 1e-1):
        with warnings.catch_warnings():  # lbfgs may stop at max_iter on 4096 features: fine for a probe
            warnings.simplefilter("ignore", ConvergenceWarning)
            model = LogisticRegression(C=c, max_iter=500).fit(feats[train], y[train])
        acc = model.score(feats[val], y[val])
        if acc > best[0]:
            best = (acc, c, model)
    return {"val_acc": best[0], "C": best[1], "test_acc": float(best[2].score(feats[test], y[test]))}


def small_cnn(num_classes: int = 3) -> nn.Module:
    """Four conv blocks (16-32-64-64 channels), global average pooling, a linear head: ~70k parameters."""
    layers: list[nn.Module] = []
    chans = (1, 16, 32, 64, 64)
    for c_in, c_out in itertools.pairwise(chans):
        layers += [nn.Conv2d(c_in, c_out, 3, padding=1), nn.BatchNorm2d(c_out), nn.ReLU(), nn.MaxPool2d(2)]
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(chans[-1], num_classes))


def augment(batch: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Random rot90 and flip: the sky has no preferred orientation."""
    k = int(torch.randint(4, (1,), generator=gen))
    batch = torch.rot90(batch, k, dims=(2, 3))  # (B, 1, S, S)
    return batch.flip(3) if bool(torch.randint(2, (1,), generator=gen)) else batch


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """Top-1 accuracy of ``model`` on ``x`` (eval mode, batches of 256)."""
    model.eval()
    with torch.no_grad():
        pred = torch.cat([model(x[i : i + 256]).argmax(1) for i in range(0, len(x), 256)])
    return float((pred == y).float().mean())


def cnn(x: np.ndarray, y: np.ndarray, parts: tuple[np.ndarray, ...], minutes: float, seed: int = 0) -> dict:
    """Train the small CNN for ``minutes`` on CPU (AdamW, cosine lr over the time budget).

    Returns:
        Test accuracy at the epoch of best validation accuracy, and the validation history.
    """
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    xt, yt = torch.from_numpy(x[:, None]), torch.from_numpy(y)  # (N, 1, S, S)
    train, val, test = (torch.from_numpy(p) for p in parts)
    model = small_cnn(len(CLASSES))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1e-4)
    budget, start, epoch, best, history = minutes * 60, time.time(), 0, (-1.0, 0.0, 0), []
    while time.time() - start < budget:
        model.train()
        order = train[torch.randperm(len(train), generator=gen)]
        for i in range(0, len(order), 64):
            # Cosine decay over the wall-clock budget: the last epochs settle whatever the CPU speed.
            progress = min(1.0, (time.time() - start) / budget)
            for group in opt.param_groups:
                group["lr"] = 1e-3 * 0.5 * (1 + math.cos(math.pi * progress))
            idx = order[i : i + 64]
            loss = nn.functional.cross_entropy(model(augment(xt[idx], gen)), yt[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        epoch += 1
        val_acc = accuracy(model, xt[val], yt[val])
        history.append(round(val_acc, 4))
        if val_acc > best[0]:
            best = (val_acc, accuracy(model, xt[test], yt[test]), epoch)
    return {
        "val_acc": best[0],
        "test_acc": best[1],
        "best_epoch": best[2],
        "epochs": epoch,
        "seconds": round(time.time() - start, 1),
        "val_history": history,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-class", type=int, default=1000)
    parser.add_argument("--minutes", type=float, default=4.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data", type=Path, default=None, help="simulate into / reuse this folder")
    args = parser.parse_args()
    torch.set_num_threads(2)
    root = args.data or Path(tempfile.mkdtemp(prefix="lens-sim-sep-")) / "set"
    simulate(root, args.per_class, seed=args.seed, workers=0)
    x, y = load_set(root)
    parts = split(y, args.seed)
    result = {
        "per_class": args.per_class,
        "seed": args.seed,
        "split": "70/15/15 stratified",
        "chance": 1 / len(CLASSES),
        "logistic_raw_pixels": logistic(x, y, parts),
        "small_cnn": cnn(x, y, parts, args.minutes, args.seed),
    }
    print(f"logistic regression on raw pixels: test acc {result['logistic_raw_pixels']['test_acc']:.3f}")
    print(
        f"small CNN from scratch ({result['small_cnn']['epochs']} epochs): "
        f"test acc {result['small_cnn']['test_acc']:.3f}"
    )
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=1))
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
