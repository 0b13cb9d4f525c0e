"""Images/second of one MAE pretraining step: ours vs a timm-built reference, and mask 0.75 vs 0.0.

One step is forward + backward + AdamW step on random images. Variants run side by side in one
process: each repeat times every variant in a rotated order (so drift from other load on the machine
hits all alike), after warmup; the median over repeats is reported.

    python bench/pretrain_throughput.py --device cpu --batch-size 64 --steps 2
    python bench/pretrain_throughput.py --device cuda --batch-size 256 --bf16

Writes ``bench/results/pretrain_throughput.json``. Exits 2 if timm is not installed.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.abc
import importlib.util
import json
import platform
import statistics
import sys
import time
import types
from collections.abc import Callable
from functools import partial
from importlib.machinery import ModuleSpec
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from maetune.model import MaskedAutoencoder, ModelConfig, get_preset, patchify, sincos_pos_embed_2d
from maetune.model.presets import PRESETS

RESULTS = Path(__file__).resolve().parent / "results" / "pretrain_throughput.json"


def _placeholder(name: str) -> type:
    """An inert placeholder class standing for a torchvision name (dunder lookups fail as usual)."""
    if name.startswith("__"):
        raise AttributeError(name)
    return _Placeholder(name, (), {})


class _Placeholder(type):
    """Metaclass: a placeholder's attributes are placeholders; instantiating one raises."""

    def __getattr__(cls, name: str) -> type:
        return _placeholder(name)

    def __call__(cls, *args: object, **kwargs: object) -> None:
        raise RuntimeError(f"torchvision placeholder {cls.__name__} used; install torchvision")


class _TorchvisionFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Imports ``torchvision`` and any ``torchvision.*`` as a module of placeholders."""

    def find_spec(self, name: str, path: object = None, target: object = None) -> ModuleSpec | None:
        return ModuleSpec(name, self, is_package=True) if name.split(".")[0] == "torchvision" else None

    def create_module(self, spec: ModuleSpec) -> types.ModuleType:
        module = types.ModuleType(spec.name)
        module.__getattr__ = _placeholder  # PEP 562: names not found are placeholders
        return module

    def exec_module(self, module: types.ModuleType) -> None:
        pass


def import_timm() -> tuple[type, type, str]:
    """timm's ViT ``Block`` and ``PatchEmbed``, and timm's version; exits 2 without timm.

    timm 1.0 imports torchvision at import time (``FrozenBatchNorm2d`` in timm/layers/create_norm.py and
    norm_act.py; datasets and transforms in timm/data, which timm/models pulls in), but the ViT Block and
    PatchEmbed paths timed here never touch it. Without torchvision, a placeholder package whose every
    name is an inert class lets timm import (using one raises).
    """
    if importlib.util.find_spec("timm") is None:
        print("timm is not installed (pip install 'maetune[bench]'); nothing to compare against.")
        raise SystemExit(2)
    try:
        import torchvision  # noqa: F401
    except ImportError:
        sys.meta_path.insert(0, _TorchvisionFinder())
    import timm
    from timm.layers import PatchEmbed
    from timm.models.vision_transformer import Block

    return Block, PatchEmbed, timm.__version__


class TimmMAE(nn.Module):
    """Reference MAE after facebookresearch/mae's ``MaskedAutoencoderViT``, from timm's Block/PatchEmbed.

    Mirrors `MaskedAutoencoder` (shapes, masked count, positions, loss, parameter names less ``encoder.``).
    """

    def __init__(self, cfg: ModelConfig, block: type, patch_embed: type) -> None:
        super().__init__()
        self.cfg = cfg
        norm = partial(nn.LayerNorm, eps=1e-6)
        d, dd, p = cfg.embed_dim, cfg.decoder_embed_dim, cfg.patch_size
        self.patch_embed = patch_embed(cfg.img_size, p, cfg.in_chans, d)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, d))
        pos = sincos_pos_embed_2d(d, cfg.grid_size).unsqueeze(0)
        self.pos_embed = nn.Parameter(pos, requires_grad=False)  # (1, 1+L, D), fixed as in MAE
        self.blocks = nn.ModuleList(
            block(d, cfg.num_heads, cfg.mlp_ratio, qkv_bias=True, norm_layer=norm) for _ in range(cfg.depth)
        )
        self.norm = norm(d)
        self.decoder_embed = nn.Linear(d, dd)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, dd))
        dpos = sincos_pos_embed_2d(dd, cfg.grid_size).unsqueeze(0)
        self.decoder_pos_embed = nn.Parameter(dpos, requires_grad=False)  # (1, 1+L, Dd)
        self.decoder_blocks = nn.ModuleList(
            block(dd, cfg.decoder_num_heads, cfg.mlp_ratio, qkv_bias=True, norm_layer=norm)
            for _ in range(cfg.decoder_depth)
        )
        self.decoder_norm = norm(dd)
        self.decoder_pred = nn.Linear(dd, p * p * cfg.in_chans)

    def random_masking(
        self, x: torch.Tensor, mask_ratio: float, generator: torch.Generator | None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        B, L, D = x.shape
        keep = L - round(mask_ratio * L)  # ours' count (MAE's int(L * (1 - r)) can differ by one)
        noise = torch.rand(B, L, generator=generator, device=x.device)  # (B, L)
        ids_shuffle = torch.argsort(noise, dim=1)
        ids_restore = torch.argsort(ids_shuffle, dim=1)
        x = torch.gather(x, 1, ids_shuffle[:, :keep, None].expand(-1, -1, D))  # (B, keep, D)
        mask = torch.ones(B, L, device=x.device)
        mask[:, :keep] = 0
        return x, torch.gather(mask, 1, ids_restore), ids_restore

    def forward_encoder(
        self, imgs: torch.Tensor, mask_ratio: float, generator: torch.Generator | None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x = self.patch_embed(imgs) + self.pos_embed[:, 1:, :]  # (B, L, D)
        x, mask, ids_restore = self.random_masking(x, mask_ratio, generator)  # (B, keep, D)
        cls = (self.cls_token + self.pos_embed[:, :1, :]).expand(x.shape[0], -1, -1)  # (B, 1, D)
        x = torch.cat([cls, x], dim=1)  # (B, 1+keep, D)
        for blk in self.blocks:
            x = blk(x)
        return self.norm(x), mask, ids_restore

    def forward_decoder(self, x: torch.Tensor, ids_restore: torch.Tensor) -> torch.Tensor:
        x = self.decoder_embed(x)  # (B, 1+keep, Dd)
        B, n, dd = x.shape
        mask_tokens = self.mask_token.expand(B, ids_restore.shape[1] + 1 - n, dd)  # (B, L-keep, Dd)
        x_ = torch.cat([x[:, 1:, :], mask_tokens], dim=1)  # (B, L, Dd)
        x_ = torch.gather(x_, 1, ids_restore[:, :, None].expand(-1, -1, dd))  # (B, L, Dd)
        x = torch.cat([x[:, :1, :], x_], dim=1) + self.decoder_pos_embed  # (B, 1+L, Dd)
        for blk in self.decoder_blocks:
            x = blk(x)
        return self.decoder_pred(self.decoder_norm(x))[:, 1:, :]  # (B, L, p*p*C)

    def forward_loss(self, imgs: torch.Tensor, pred: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        target = patchify(imgs, self.cfg.patch_size)  # (B, L, p*p*C), the same layout as ours
        if self.cfg.loss == "bce":
            lo = imgs.flatten(1).amin(1)[:, None, None]
            span = (imgs.flatten(1).amax(1)[:, None, None] - lo).clamp_min(1e-6)
            loss = F.binary_cross_entropy_with_logits(pred, (target - lo) / span, reduction="none")
        else:
            if self.cfg.loss == "mse_norm_pix":
                mean, var = target.mean(-1, keepdim=True), target.var(-1, keepdim=True)
                target = (target - mean) / (var + 1e-6) ** 0.5
            loss = (pred - target) ** 2
        loss = loss.mean(dim=-1)  # (B, L)
        weight = torch.where(mask.sum() > 0, mask, torch.ones_like(mask))
        return (loss * weight).sum() / weight.sum()

    def forward(
        self, imgs: torch.Tensor, mask_ratio: float, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        latent, mask, ids_restore = self.forward_encoder(imgs, mask_ratio, generator)
        pred = self.forward_decoder(latent, ids_restore)
        return self.forward_loss(imgs, pred, mask), pred, mask


def check_same_model(ours: MaskedAutoencoder, ref: TimmMAE, imgs: torch.Tensor) -> dict[str, float | int]:
    """Copy our weights into the reference and compare parameter counts and losses on one masked batch."""
    state = {k.removeprefix("encoder."): v for k, v in ours.state_dict().items()}
    missing, unexpected = ref.load_state_dict(state, strict=False)
    if set(missing) != {"pos_embed", "decoder_pos_embed"} or unexpected:
        raise RuntimeError(f"reference does not mirror our model: missing {missing}, unexpected {unexpected}")
    with torch.no_grad():
        a = ours(imgs[:8], ours.cfg.mask_ratio, torch.Generator(imgs.device).manual_seed(0))[0]
        b = ref(imgs[:8], ours.cfg.mask_ratio, torch.Generator(imgs.device).manual_seed(0))[0]
    n_ours, n_ref = (sum(p.numel() for p in mod.parameters() if p.requires_grad) for mod in (ours, ref))
    return {"params_ours": n_ours, "params_timm": n_ref, "loss_abs_diff": abs((a - b).item())}


def make_step(model: nn.Module, imgs: torch.Tensor, ratio: float, bf16: bool) -> Callable[[], None]:
    """One pretraining step closure: forward, backward, AdamW step."""
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.05)
    amp = torch.autocast("cuda", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()

    def step() -> None:
        with amp:
            loss = model(imgs, mask_ratio=ratio)[0]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


def time_variants(steps: dict, n: int, repeats: int, warmup: int, device: str) -> dict[str, dict]:
    """Wall and process-CPU seconds per step of every variant, per repeat, in rotated order.

    On a shared CPU wall time swings with other load; process CPU time (with ``--threads 1``) is steadier.
    """
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    for step in steps.values():
        for _ in range(warmup):
            step()
    sync()
    times: dict[str, dict] = {name: {"wall": [], "cpu": []} for name in steps}
    names = list(steps)
    for r in range(repeats):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            t0, c0 = time.perf_counter(), time.process_time()
            for _ in range(n):
                steps[name]()
            sync()
            times[name]["wall"].append((time.perf_counter() - t0) / n)
            times[name]["cpu"].append((time.process_time() - c0) / n)
    return times


def summarize(times: dict[str, dict], batch: int, m: float) -> tuple[dict, dict[str, float]]:
    """Median per variant, and the two ratios as medians of back-to-back pairs (robust to drift)."""
    rows = {}
    for name, t in times.items():
        wall, cpu = statistics.median(t["wall"]), statistics.median(t["cpu"])
        rows[name] = dict(images_per_sec=batch / wall, sec_per_step=wall, cpu_sec_per_step=cpu, **t)
    pairs = {
        "ours_over_timm_throughput": (f"timm@{m}", f"ours@{m}"),
        "time_mask075_over_mask0": ("ours@0.75", "ours@0.0"),
    }
    ratios = {
        f"{key}_{clock}": statistics.median(
            x / y for x, y in zip(times[a][clock], times[b][clock], strict=True)
        )
        for key, (a, b) in pairs.items()
        for clock in ("wall", "cpu")
    }
    return rows, ratios


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--preset", choices=sorted(PRESETS), default="seed-256")
    parser.add_argument("--steps", type=int, default=3, help="timed steps per repeat")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--bf16", action="store_true", help="bf16 autocast (cuda only)")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    args = parser.parse_args()
    if args.bf16 and args.device != "cuda":
        parser.error("--bf16 needs --device cuda")
    return args


def main() -> None:
    args = parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    block, patch_embed, timm_version = import_timm()
    cfg = get_preset(args.preset)
    torch.manual_seed(0)
    imgs = torch.rand(args.batch_size, cfg.in_chans, cfg.img_size, cfg.img_size, device=args.device)
    ours = MaskedAutoencoder(cfg).to(args.device)
    ref = TimmMAE(cfg, block, patch_embed).to(args.device)
    check = check_same_model(ours, ref, imgs)
    m = cfg.mask_ratio
    steps = {
        f"ours@{m}": make_step(ours, imgs, m, args.bf16),
        f"timm@{m}": make_step(ref, imgs, m, args.bf16),
    }
    for ratio in (0.75, 0.0):
        steps.setdefault(f"ours@{ratio}", make_step(ours, imgs, ratio, args.bf16))
    times = time_variants(steps, args.steps, args.repeats, args.warmup, args.device)
    rows, ratios = summarize(times, args.batch_size, m)
    print(f"preset {args.preset}, batch {args.batch_size}, device {args.device}, bf16 {args.bf16}")
    print(f"threads {torch.get_num_threads()}, same model: {check}")
    print(f"{'variant':<12}{'images/s':>12}{'ms/step':>12}{'cpu ms/step':>14}")
    for name, row in rows.items():
        ms, cpu_ms = 1000 * row["sec_per_step"], 1000 * row["cpu_sec_per_step"]
        print(f"{name:<12}{row['images_per_sec']:>12.1f}{ms:>12.1f}{cpu_ms:>14.1f}")
    print("\n".join(f"{key} (paired median): {value:.3f}" for key, value in ratios.items()))
    env = {
        "torch": torch.__version__,
        "timm": timm_version,
        "timm_fused_attn": bool(getattr(ref.blocks[0].attn, "fused_attn", False)),
        "threads": torch.get_num_threads(),
        "device_name": torch.cuda.get_device_name() if args.device == "cuda" else platform.processor(),
    }
    record = dict(args=vars(args), model=cfg.__dict__, env=env, check=check, results=rows, ratios=ratios)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(record, indent=2))
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
