"""Masked autoencoder: patches, masking, encoder input, losses, reconstruction, gradients."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch

from maetune.model import MaskedAutoencoder, ModelConfig, patchify, sample_masking, unpatchify

TINY = ModelConfig(
    img_size=16, patch_size=4, embed_dim=16, depth=2, num_heads=2,
    decoder_embed_dim=8, decoder_depth=1, decoder_num_heads=2, mask_ratio=0.75,
)  # fmt: skip


def mae_with(**kw: object) -> MaskedAutoencoder:
    return MaskedAutoencoder(replace(TINY, **kw))


@pytest.mark.parametrize(
    ("chans", "size", "patch"), [(1, 28, 7), (1, 28, 4), (3, 28, 7), (3, 28, 4), (3, 16, 8)]
)
def test_patchify_round_trip(chans: int, size: int, patch: int) -> None:
    imgs = torch.randn(2, chans, size, size)
    x = patchify(imgs, patch)
    assert x.shape == (2, (size // patch) ** 2, patch * patch * chans)
    # Patch 1 is row 0, column 1; pixels row-major with channels last (MAE's layout).
    torch.testing.assert_close(
        x[:, 1], imgs[:, :, :patch, patch : 2 * patch].permute(0, 2, 3, 1).reshape(2, -1)
    )
    assert torch.equal(unpatchify(x, patch), imgs)
    with pytest.raises(ValueError):
        patchify(imgs, 5)


@pytest.mark.parametrize("num_patches", [16, 49, 64])
@pytest.mark.parametrize("ratio", [0.0, 0.3, 0.5, 0.75, 0.9])
def test_exact_number_masked(num_patches: int, ratio: float) -> None:
    ids_keep, mask, ids_restore = sample_masking(5, num_patches, ratio, torch.device("cpu"))
    n_masked = round(ratio * num_patches)
    assert torch.all(mask.sum(1) == n_masked)
    assert ids_keep.shape == (5, num_patches - n_masked)
    assert torch.all(mask.gather(1, ids_keep) == 0)  # kept patches are the visible ones
    assert all(len(set(row.tolist())) == row.numel() for row in ids_keep)
    assert torch.equal(ids_restore.sort(1).values, torch.arange(num_patches).expand(5, -1))


def test_random_masking_gathers_visible_tokens() -> None:
    mae = mae_with()
    x = torch.randn(3, 16, 5)
    x_masked, mask, ids_restore = mae.random_masking(x, 0.5)
    assert x_masked.shape == (3, 8, 5) and torch.all(mask.sum(1) == 8)
    for b in range(3):
        torch.testing.assert_close(
            x_masked[b], x[b][mask[b] == 0][torch.argsort(ids_restore[b][mask[b] == 0])]
        )


@pytest.mark.parametrize("ratio", [0.0, 0.5, 0.75])
def test_encoder_sees_only_visible_tokens(ratio: float) -> None:
    mae = mae_with()
    lengths: list[int] = []
    mae.encoder.blocks[0].register_forward_hook(lambda m, inp, out: lengths.append(inp[0].shape[1]))
    latent, _, ids_restore = mae.forward_encoder(torch.randn(2, 1, 16, 16), ratio)
    visible = 16 - round(ratio * 16)
    assert lengths == [1 + visible] and latent.shape == (2, 1 + visible, 16)
    assert mae.forward_decoder(latent, ids_restore).shape == (2, 16, 16)


def test_forward_shapes_and_default_ratio() -> None:
    mae = mae_with(in_chans=3, mask_ratio=0.5)
    loss, pred, mask = mae(torch.rand(2, 3, 16, 16))
    assert loss.ndim == 0 and pred.shape == (2, 16, 4 * 4 * 3) and mask.shape == (2, 16)
    assert torch.all(mask.sum(1) == 8)


def test_seeded_generator_is_deterministic() -> None:
    mae, imgs = mae_with(), torch.rand(2, 1, 16, 16)
    out1 = mae(imgs, generator=torch.Generator().manual_seed(3))
    out2 = mae(imgs, generator=torch.Generator().manual_seed(3))
    out3 = mae(imgs, generator=torch.Generator().manual_seed(4))
    assert all(torch.equal(a, b) for a, b in zip(out1, out2, strict=True))
    assert not torch.equal(out1[2], out3[2])


@pytest.mark.parametrize("pool", ["cls", "avg"])
def test_mae_every_parameter_gets_gradient(pool: str) -> None:
    torch.manual_seed(0)
    mae = mae_with(pool=pool)
    loss, _, _ = mae(torch.rand(2, 1, 16, 16), mask_ratio=0.75)
    loss.backward()
    for name, p in mae.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def two_patch_mask() -> torch.Tensor:
    """A (1, 4) mask hiding patches 0 and 3 of a 2x2 patch grid."""
    return torch.tensor([[1.0, 0.0, 0.0, 1.0]])


def test_bce_loss_known_cases() -> None:
    mae = mae_with(img_size=4, patch_size=2, loss="bce")
    imgs = torch.tensor(
        [[[[1.0, 1.0, 0.3, 0.2], [1.0, 1.0, 0.5, 0.6], [0.7, 0.4, 0.0, 0.0], [0.1, 0.9, 0.0, 0.0]]]]
    )
    pred = torch.full((1, 4, 4), 50.0)  # visible patches: huge error that must not count
    pred[:, [0, 3]] = math.log(3.0)  # sigmoid = 3/4
    # Patch 0 targets 1: -log(3/4) = log(4/3). Patch 3 targets 0: -log(1 - 3/4) = log(4).
    expected = (math.log(4 / 3) + math.log(4)) / 2
    assert mae.forward_loss(imgs, pred, two_patch_mask()).item() == pytest.approx(expected, rel=1e-5)
    # Per-image min-max: an affine rescale of the image gives the same targets.
    assert mae.forward_loss(imgs * 10 + 5, pred, two_patch_mask()).item() == pytest.approx(expected, rel=1e-5)
    # Logits 0 give log 2 whatever the target, constant images included (no NaN from a zero range).
    zero = torch.zeros(1, 4, 4)
    assert mae.forward_loss(torch.full((1, 1, 4, 4), 0.5), zero, two_patch_mask()).item() == pytest.approx(
        math.log(2)
    )


def test_mse_losses_known_cases() -> None:
    mae = mae_with(img_size=4, patch_size=2, loss="mse")
    imgs = torch.arange(16.0).reshape(1, 1, 4, 4)
    target = mae.patchify(imgs)
    assert mae.forward_loss(imgs, target, two_patch_mask()).item() == 0.0
    pred = target + torch.tensor([1.0, 7.0, 7.0, 3.0])[None, :, None]  # masked errors 1 and 3
    assert mae.forward_loss(imgs, pred, two_patch_mask()).item() == pytest.approx((1 + 9) / 2)
    # Mask ratio 0 (nothing hidden): the mean over all patches.
    assert mae.forward_loss(imgs, pred, torch.zeros(1, 4)).item() == pytest.approx((1 + 49 + 49 + 9) / 4)

    norm_pix = mae_with(img_size=4, patch_size=2, loss="mse_norm_pix")
    # Patch 0 pixels 0, 1, 4, 5: mean 2.5, unbiased var (6.25+2.25+2.25+6.25)/3 = 17/3. With pred 0 the
    # loss is mean(t^2) = (17/4) / (17/3 + 1e-6); patch 3 is constant, so its normalized target is 0.
    imgs = torch.tensor(
        [[[[0.0, 1.0, 2.0, 2.0], [4.0, 5.0, 2.0, 2.0], [3.0, 3.0, 9.0, 9.0], [3.0, 3.0, 9.0, 9.0]]]]
    )
    expected = ((17 / 4) / (17 / 3 + 1e-6) + 0.0) / 2
    loss = norm_pix.forward_loss(imgs, torch.zeros(1, 4, 4), two_patch_mask())
    assert loss.item() == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("loss", ["bce", "mse", "mse_norm_pix"])
def test_reconstruct_inverts_the_target(loss: str) -> None:
    mae = mae_with(loss=loss, in_chans=3)
    imgs = torch.rand(2, 3, 16, 16) * 5 - 1
    target = mae.patchify(imgs)
    if loss == "bce":
        lo, span = mae.image_range(imgs)
        pred = torch.logit(((target - lo) / span).clamp(1e-6, 1 - 1e-6))
    elif loss == "mse_norm_pix":
        mean, std = mae.patch_stats(target)
        pred = (target - mean) / std
    else:
        pred = target
    torch.testing.assert_close(mae.reconstruct(imgs, pred, torch.ones(2, 16)), imgs, atol=1e-4, rtol=1e-4)


def test_masked_input_and_paste_visible() -> None:
    mae = mae_with()
    imgs = torch.rand(1, 1, 16, 16) + 1
    mask = torch.zeros(1, 16)
    mask[0, 1] = 1  # hide row 0, column 1
    masked = mae.masked_input(imgs, mask)
    assert torch.all(masked[..., :4, 4:8] == 0)
    assert torch.equal(masked[..., :, 8:], imgs[..., :, 8:]) and torch.equal(
        masked[..., :, :4], imgs[..., :, :4]
    )
    pred = torch.zeros(1, 16, 16)
    pasted = mae.reconstruct(imgs, pred, mask, paste_visible=True)
    plain = mae.reconstruct(imgs, pred, mask)
    assert torch.equal(pasted[..., :4, 4:8], plain[..., :4, 4:8])
    assert torch.equal(pasted[..., 4:, :], imgs[..., 4:, :])
