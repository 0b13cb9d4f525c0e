"""Masked autoencoder: a ViT encoder that sees only the visible patches and a light decoder.

The steps follow facebookresearch/mae's ``models_mae``: `patchify`, `random_masking`, `forward_encoder`,
`forward_decoder`, `forward_loss`. Masked patches are dropped before the encoder (not replaced by
tokens), so a 0.75 mask ratio costs the encoder about a quarter of a full pass.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from maetune.model.config import ModelConfig
from maetune.model.vit import LN_EPS, Block, VisionTransformer, init_linear_and_norm, sincos_pos_embed_2d

NORM_PIX_EPS = 1e-6  # MAE's variance epsilon for per-patch normalized targets
RANGE_EPS = 1e-6  # smallest image range divided by in the BCE min-max normalization


def patchify(imgs: torch.Tensor, patch_size: int) -> torch.Tensor:
    """Cut images into flattened patches, MAE's layout (pixels of a patch row-major, channels last).

    Args:
        imgs: (B, C, H, W), with H and W divisible by ``patch_size``.
        patch_size: Side p of a square patch.

    Returns:
        (B, L, p*p*C) with L = (H/p) * (W/p) in raster order.
    """
    B, C, H, W = imgs.shape
    p = patch_size
    if H % p or W % p:
        raise ValueError(f"patch size {p} does not divide the image size {H}x{W}")
    h, w = H // p, W // p
    x = imgs.reshape(B, C, h, p, w, p)  # (B, C, h, p, w, p)
    x = torch.einsum("bchpwq->bhwpqc", x)  # (B, h, w, p, p, C)
    return x.reshape(B, h * w, p * p * C)  # (B, L, p*p*C)


def unpatchify(x: torch.Tensor, patch_size: int) -> torch.Tensor:
    """Inverse of `patchify` for a square grid of patches.

    Args:
        x: (B, L, p*p*C) with L a perfect square.
        patch_size: Side p of a square patch.

    Returns:
        Images (B, C, H, W) with H = W = p * sqrt(L).
    """
    B, L, N = x.shape
    p = patch_size
    h = round(L**0.5)
    if h * h != L or N % (p * p):
        raise ValueError(f"cannot unpatchify {tuple(x.shape)} with patch size {p} into a square image")
    C = N // (p * p)
    x = x.reshape(B, h, h, p, p, C)  # (B, h, w, p, p, C)
    x = torch.einsum("bhwpqc->bchpwq", x)  # (B, C, h, p, w, p)
    return x.reshape(B, C, h * p, h * p)  # (B, C, H, W)


def sample_masking(
    batch: int,
    num_patches: int,
    mask_ratio: float,
    device: torch.device,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Draw an independent random mask per sample by sorting uniform noise (MAE's shuffle).

    Args:
        batch: B.
        num_patches: L.
        mask_ratio: Fraction to hide, in [0, 1); exactly ``round(mask_ratio * L)`` per sample.
        device: Device of the returned tensors.
        generator: Optional RNG for reproducible masks; the noise is drawn on its device.

    Returns:
        ``ids_keep`` (B, L_keep) indices of visible patches, ``mask`` (B, L) float with 1 = hidden and
        0 = visible, ``ids_restore`` (B, L) the permutation that undoes the shuffle.
    """
    num_keep = num_patches - round(mask_ratio * num_patches)
    noise_device = generator.device if generator is not None else device
    noise = torch.rand(batch, num_patches, device=noise_device, generator=generator).to(device)  # (B, L)
    ids_shuffle = torch.argsort(noise, dim=1)  # (B, L): ascending noise is kept
    ids_restore = torch.argsort(ids_shuffle, dim=1)  # (B, L)
    ids_keep = ids_shuffle[:, :num_keep]  # (B, L_keep)
    mask = torch.ones(batch, num_patches, device=device)  # (B, L)
    mask[:, :num_keep] = 0
    mask = torch.gather(mask, 1, ids_restore)  # (B, L) in patch order
    return ids_keep, mask, ids_restore


class MaskedAutoencoder(nn.Module):
    """MAE with a `VisionTransformer` encoder and a narrower transformer decoder.

    Attributes:
        encoder: The ViT encoder, shared with the classifier after pretraining.
    """

    def __init__(self, cfg: ModelConfig) -> None:
        """Build encoder and decoder.

        Args:
            cfg: Model shape, including the decoder fields, mask ratio and loss.
        """
        super().__init__()
        self.cfg = cfg
        self.patch_size = cfg.patch_size
        self.encoder = VisionTransformer(cfg)
        dd = cfg.decoder_embed_dim
        self.decoder_embed = nn.Linear(cfg.embed_dim, dd)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, dd))
        pos = sincos_pos_embed_2d(dd, cfg.grid_size, cls_token=True)
        self.register_buffer("decoder_pos_embed", pos.unsqueeze(0), persistent=False)  # (1, 1+L, Dd)
        self.decoder_blocks = nn.ModuleList(
            Block(dd, cfg.decoder_num_heads, cfg.mlp_ratio) for _ in range(cfg.decoder_depth)
        )
        self.decoder_norm = nn.LayerNorm(dd, eps=LN_EPS)
        self.decoder_pred = nn.Linear(dd, cfg.patch_size**2 * cfg.in_chans)
        self.init_decoder_weights()

    def init_decoder_weights(self) -> None:
        """MAE's init for the decoder (the encoder initializes itself): N(0, 0.02) mask token, xavier."""
        nn.init.normal_(self.mask_token, std=0.02)
        for module in (self.decoder_embed, self.decoder_blocks, self.decoder_norm, self.decoder_pred):
            module.apply(init_linear_and_norm)

    def patchify(self, imgs: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, L, p*p*C), the module function `patchify`."""
        return patchify(imgs, self.patch_size)

    def unpatchify(self, x: torch.Tensor) -> torch.Tensor:
        """(B, L, p*p*C) -> (B, C, H, W), the module function `unpatchify`."""
        return unpatchify(x, self.patch_size)

    def random_masking(
        self, x: torch.Tensor, mask_ratio: float, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Keep a random subset of tokens per sample.

        Args:
            x: Tokens (B, L, D).
            mask_ratio: Fraction hidden; exactly ``round(mask_ratio * L)`` tokens per sample.
            generator: Optional RNG for a reproducible mask.

        Returns:
            ``x_masked`` (B, L_keep, D), ``mask`` (B, L) with 1 = hidden, ``ids_restore`` (B, L).
        """
        B, L, D = x.shape
        ids_keep, mask, ids_restore = sample_masking(B, L, mask_ratio, x.device, generator)
        x_masked = torch.gather(x, 1, ids_keep.unsqueeze(-1).expand(-1, -1, D))  # (B, L_keep, D)
        return x_masked, mask, ids_restore

    def forward_encoder(
        self, imgs: torch.Tensor, mask_ratio: float, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Encode only the visible patches.

        Args:
            imgs: (B, C, H, W).
            mask_ratio: Fraction of patches hidden from the encoder.
            generator: Optional RNG for a reproducible mask.

        Returns:
            ``latent`` (B, 1 + L_keep, D) normalized tokens, ``mask`` (B, L), ``ids_restore`` (B, L).
        """
        B, L = imgs.shape[0], self.cfg.num_patches
        ids_keep, mask, ids_restore = sample_masking(B, L, mask_ratio, imgs.device, generator)
        latent = self.encoder.forward_latent(imgs, ids_keep)  # (B, 1+L_keep, D)
        return latent, mask, ids_restore

    def forward_decoder(self, latent: torch.Tensor, ids_restore: torch.Tensor) -> torch.Tensor:
        """Predict every patch from the visible tokens plus mask tokens.

        Args:
            latent: Encoder output (B, 1 + L_keep, D), class token first.
            ids_restore: (B, L) permutation back to patch order.

        Returns:
            Predictions (B, L, p*p*C): logits for the ``bce`` loss, pixels (or normalized pixels) for MSE.
        """
        x = self.decoder_embed(latent)  # (B, 1+L_keep, Dd)
        B, n, dd = x.shape
        L = ids_restore.shape[1]
        mask_tokens = self.mask_token.expand(B, L + 1 - n, dd)  # (B, L-L_keep, Dd)
        x_ = torch.cat([x[:, 1:, :], mask_tokens], dim=1)  # (B, L, Dd) in shuffled order
        x_ = torch.gather(x_, 1, ids_restore.unsqueeze(-1).expand(-1, -1, dd))  # (B, L, Dd) patch order
        x = torch.cat([x[:, :1, :], x_], dim=1) + self.decoder_pos_embed  # (B, 1+L, Dd)
        for blk in self.decoder_blocks:
            x = blk(x)  # (B, 1+L, Dd)
        x = self.decoder_pred(self.decoder_norm(x))  # (B, 1+L, p*p*C)
        return x[:, 1:, :]  # (B, L, p*p*C)

    def image_range(self, imgs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-image min and range (B, 1, 1) for ``bce`` targets; range >= RANGE_EPS (constant image -> 0)."""
        flat = imgs.flatten(1)  # (B, C*H*W)
        lo = flat.amin(dim=1)[:, None, None]  # (B, 1, 1)
        span = (flat.amax(dim=1)[:, None, None] - lo).clamp_min(RANGE_EPS)  # (B, 1, 1)
        return lo, span

    def patch_stats(self, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-patch mean and std (B, L, 1) of (B, L, p*p*C) targets; MAE's unbiased var (1-pixel: biased)."""
        mean = target.mean(dim=-1, keepdim=True)  # (B, L, 1)
        var = target.var(dim=-1, keepdim=True, correction=1 if target.shape[-1] > 1 else 0)  # (B, L, 1)
        return mean, (var + NORM_PIX_EPS).sqrt()

    def forward_loss(self, imgs: torch.Tensor, pred: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Reconstruction loss averaged over the hidden patches.

        ``bce``: BCE-with-logits against the image min-max normalized to [0, 1] per image (an image that
        already spans [0, 1] is unchanged). ``mse``: MSE on raw pixels. ``mse_norm_pix``: MSE against
        per-patch normalized pixels, ``(t - mean) / sqrt(var + 1e-6)``. Each patch's loss is the mean over
        its pixels; the result is the mean over hidden patches, or over all patches when nothing is
        hidden (mask ratio 0), so a mask-free run still trains a plain autoencoder.

        Args:
            imgs: (B, C, H, W) input images.
            pred: (B, L, p*p*C) decoder output.
            mask: (B, L), 1 = hidden.

        Returns:
            Scalar loss.
        """
        target = self.patchify(imgs)  # (B, L, p*p*C)
        if self.cfg.loss == "bce":
            lo, span = self.image_range(imgs)
            target = (target - lo) / span  # (B, L, p*p*C) in [0, 1]
            per_pixel = F.binary_cross_entropy_with_logits(pred, target, reduction="none")
        else:
            if self.cfg.loss == "mse_norm_pix":
                mean, std = self.patch_stats(target)
                target = (target - mean) / std  # (B, L, p*p*C)
            per_pixel = (pred - target) ** 2
        per_patch = per_pixel.mean(dim=-1)  # (B, L)
        # No hidden patch at all (mask ratio 0): weight every patch. A tensor test, so no host sync.
        weight = torch.where(mask.sum() > 0, mask, torch.ones_like(mask))  # (B, L)
        return (per_patch * weight).sum() / weight.sum()

    def forward(
        self, imgs: torch.Tensor, mask_ratio: float | None = None, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One pretraining pass.

        Args:
            imgs: (B, C, H, W).
            mask_ratio: Fraction hidden; None means ``cfg.mask_ratio``.
            generator: Optional RNG for a reproducible mask.

        Returns:
            ``loss`` scalar, ``pred`` (B, L, p*p*C), ``mask`` (B, L) with 1 = hidden.
        """
        ratio = self.cfg.mask_ratio if mask_ratio is None else mask_ratio
        latent, mask, ids_restore = self.forward_encoder(imgs, ratio, generator)  # (B, 1+L_keep, D)
        pred = self.forward_decoder(latent, ids_restore)  # (B, L, p*p*C)
        return self.forward_loss(imgs, pred, mask), pred, mask

    def mask_image(self, mask: torch.Tensor) -> torch.Tensor:
        """Per-pixel mask (B, 1, H, W), 1 = hidden, from a patch mask (B, L)."""
        patches = mask.unsqueeze(-1).expand(-1, -1, self.patch_size**2)  # (B, L, p*p)
        return self.unpatchify(patches)  # (B, 1, H, W)

    def masked_input(self, imgs: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """The images with hidden patches zeroed, (B, C, H, W): what the encoder saw."""
        return imgs * (1 - self.mask_image(mask).to(imgs.dtype))  # (B, C, H, W)

    @torch.no_grad()
    def reconstruct(
        self, imgs: torch.Tensor, pred: torch.Tensor, mask: torch.Tensor, paste_visible: bool = False
    ) -> torch.Tensor:
        """Decoder predictions as displayable images in the input's value space.

        ``bce``: sigmoid of the logits mapped back through each image's min and range. ``mse``: the
        prediction as is. ``mse_norm_pix``: de-normalized with the target's per-patch mean and std.

        Args:
            imgs: (B, C, H, W) the input images.
            pred: (B, L, p*p*C) decoder output.
            mask: (B, L), 1 = hidden.
            paste_visible: Replace visible patches with the original pixels, as MAE's visualization's
                "reconstruction + visible" panel does.

        Returns:
            (B, C, H, W) reconstruction.
        """
        pred = pred.float()
        if self.cfg.loss == "bce":
            lo, span = self.image_range(imgs)
            pixels = torch.sigmoid(pred) * span + lo  # (B, L, p*p*C)
        elif self.cfg.loss == "mse_norm_pix":
            mean, std = self.patch_stats(self.patchify(imgs))
            pixels = pred * std + mean  # (B, L, p*p*C)
        else:
            pixels = pred
        recon = self.unpatchify(pixels).to(imgs.dtype)  # (B, C, H, W)
        if paste_visible:
            hidden = self.mask_image(mask).to(imgs.dtype)  # (B, 1, H, W)
            recon = recon * hidden + imgs * (1 - hidden)  # (B, C, H, W)
        return recon
