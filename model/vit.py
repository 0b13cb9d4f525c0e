"""Vision Transformer encoder: patch embedding, fixed 2-D sin-cos positions, pre-norm blocks.

Follows facebookresearch/mae's encoder and timm's ``VisionTransformer`` (parameter names match timm's,
``patch_embed.proj``, ``blocks.i.attn.qkv``, ``blocks.i.mlp.fc1``, ...), with attention through
``F.scaled_dot_product_attention`` so PyTorch picks the fused kernel for the device.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from maetune.model.config import ModelConfig

LN_EPS = 1e-6


def sincos_pos_embed_1d(dim: int, pos: torch.Tensor) -> torch.Tensor:
    """Sin-cos embedding of positions, MAE's ``get_1d_sincos_pos_embed_from_grid``.

    Args:
        dim: Output width; an odd width gets a trailing zero column.
        pos: Positions, shape (M,).

    Returns:
        Embedding of shape (M, dim): ``dim // 2`` sines then ``dim // 2`` cosines.
    """
    half = dim // 2
    omega = 1.0 / 10000 ** (torch.arange(half, dtype=torch.float64) / max(half, 1))  # (dim/2,)
    out = pos.to(torch.float64)[:, None] * omega[None, :]  # (M, dim/2)
    emb = torch.cat([torch.sin(out), torch.cos(out)], dim=1)  # (M, 2*(dim/2))
    return F.pad(emb, (0, dim - emb.shape[1]))  # (M, dim)


def sincos_pos_embed_2d(dim: int, grid_size: int, cls_token: bool = True) -> torch.Tensor:
    """Fixed 2-D sin-cos position embedding of a square patch grid (MAE's recipe).

    The first half of the channels encodes the column, the second half the row (MAE's values exactly
    when ``dim`` is divisible by 4; any other width also works).

    Args:
        dim: Embedding width.
        grid_size: Patches along one side.
        cls_token: Prepend an all-zero row for the class token.

    Returns:
        Float32 tensor of shape (grid_size**2 + cls_token, dim), rows in raster order.
    """
    coords = torch.arange(grid_size, dtype=torch.float64)
    rows, cols = torch.meshgrid(coords, coords, indexing="ij")  # (G, G) each
    dim_w = dim // 2
    emb_w = sincos_pos_embed_1d(dim_w, cols.reshape(-1))  # (L, dim/2)
    emb_h = sincos_pos_embed_1d(dim - dim_w, rows.reshape(-1))  # (L, dim/2)
    emb = torch.cat([emb_w, emb_h], dim=1)  # (L, dim)
    if cls_token:
        emb = torch.cat([torch.zeros(1, dim, dtype=emb.dtype), emb], dim=0)  # (1+L, dim)
    return emb.float()


class PatchEmbed(nn.Module):
    """Image to patch tokens with a strided convolution (one linear map per patch)."""

    def __init__(self, patch_size: int, in_chans: int, embed_dim: int) -> None:
        """Build the projection.

        Args:
            patch_size: Side of a square patch (kernel and stride).
            in_chans: Image channels.
            embed_dim: Token width.
        """
        super().__init__()
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Embed (B, C, H, W) images into (B, L, D) tokens in raster order."""
        x = self.proj(x)  # (B, D, H/p, W/p)
        return x.flatten(2).transpose(1, 2)  # (B, L, D)


class Attention(nn.Module):
    """Multi-head self-attention through ``F.scaled_dot_product_attention``."""

    def __init__(self, dim: int, num_heads: int) -> None:
        """Build the projections.

        Args:
            dim: Token width; must be divisible by ``num_heads``.
            num_heads: Attention heads.
        """
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Attend over all N tokens of (B, N, D)."""
        B, N, D = x.shape
        qkv = self.qkv(x).reshape(B, N, 3, self.num_heads, self.head_dim)  # (B, N, 3, H, hd)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # 3 x (B, H, N, hd)
        x = F.scaled_dot_product_attention(q, k, v)  # (B, H, N, hd)
        x = x.transpose(1, 2).reshape(B, N, D)  # (B, N, D)
        return self.proj(x)  # (B, N, D)


class Mlp(nn.Module):
    """Two-layer GELU MLP."""

    def __init__(self, dim: int, hidden_dim: int) -> None:
        """Build the layers.

        Args:
            dim: Input and output width.
            hidden_dim: Hidden width.
        """
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden_dim)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden_dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map (B, N, D) to (B, N, D)."""
        return self.fc2(self.act(self.fc1(x)))  # (B, N, D)


class Block(nn.Module):
    """Pre-norm transformer block: ``x + attn(norm1(x))`` then ``x + mlp(norm2(x))``."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0) -> None:
        """Build the block.

        Args:
            dim: Token width.
            num_heads: Attention heads; must divide ``dim``.
            mlp_ratio: MLP hidden width as a multiple of ``dim`` (truncated to int, like timm).
        """
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=LN_EPS)
        self.attn = Attention(dim, num_heads)
        self.norm2 = nn.LayerNorm(dim, eps=LN_EPS)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map (B, N, D) to (B, N, D)."""
        x = x + self.attn(self.norm1(x))  # (B, N, D)
        return x + self.mlp(self.norm2(x))  # (B, N, D)


def init_linear_and_norm(module: nn.Module) -> None:
    """MAE's init for one module: xavier-uniform Linear weights, zero biases, unit LayerNorms."""
    if isinstance(module, nn.Linear):
        nn.init.xavier_uniform_(module.weight)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm) and module.elementwise_affine:
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)


class VisionTransformer(nn.Module):
    """ViT encoder with a class token and fixed sin-cos positions.

    Final norm, timm's convention: with ``pool="cls"`` the norm is applied to every token in
    `forward_features` and the class token is read out; with ``pool="avg"`` `forward_features` returns
    the un-normalized tokens and the norm is applied after averaging the patch tokens (timm's
    ``fc_norm``, MAE's global-pool fine-tuning). It is one module, ``norm``, in both cases, so parameter
    names and counts do not depend on the pool. `forward_latent` always gives per-token normalized
    tokens, which is what the MAE decoder reads.
    """

    def __init__(self, cfg: ModelConfig) -> None:
        """Build the encoder.

        Args:
            cfg: Model shape; the encoder uses the image, patch, width, depth, heads, mlp and pool fields.
        """
        super().__init__()
        self.cfg = cfg
        self.embed_dim = cfg.embed_dim
        self.pool = cfg.pool
        self.patch_embed = PatchEmbed(cfg.patch_size, cfg.in_chans, cfg.embed_dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, cfg.embed_dim))
        # A buffer, not a parameter: it never trains, and is rebuilt from the config rather than stored.
        pos = sincos_pos_embed_2d(cfg.embed_dim, cfg.grid_size, cls_token=True)
        self.register_buffer("pos_embed", pos.unsqueeze(0), persistent=False)  # (1, 1+L, D)
        self.blocks = nn.ModuleList(
            Block(cfg.embed_dim, cfg.num_heads, cfg.mlp_ratio) for _ in range(cfg.depth)
        )
        self.norm = nn.LayerNorm(cfg.embed_dim, eps=LN_EPS)
        self._layer_ids = self._build_layer_ids()
        self.init_weights()

    def _build_layer_ids(self) -> dict[str, int]:
        """Layer id of every parameter, from the module structure rather than parsed names."""
        ids = {"cls_token": 0}
        ids.update({f"patch_embed.{n}": 0 for n, _ in self.patch_embed.named_parameters()})
        for i, blk in enumerate(self.blocks):
            ids.update({f"blocks.{i}.{n}": i + 1 for n, _ in blk.named_parameters()})
        ids.update({f"norm.{n}": len(self.blocks) + 1 for n, _ in self.norm.named_parameters()})
        return ids

    def init_weights(self) -> None:
        """MAE's init: patch projection as a Linear (xavier), cls token N(0, 0.02), Linear/LayerNorm."""
        w = self.patch_embed.proj.weight
        nn.init.xavier_uniform_(w.view(w.shape[0], -1))
        nn.init.normal_(self.cls_token, std=0.02)
        self.apply(init_linear_and_norm)

    @property
    def num_layers(self) -> int:
        """Layer-id count for layer-wise lr decay: embeddings, ``depth`` blocks, final norm = depth + 1."""
        return len(self.blocks) + 1

    def layer_id(self, param_name: str) -> int:
        """Layer of a parameter for layer-wise lr decay.

        Args:
            param_name: Name as given by ``self.named_parameters()``.

        Returns:
            0 for the patch embedding and class token, ``i + 1`` for block ``i``, ``depth + 1`` for the
            final norm.
        """
        if param_name not in self._layer_ids:
            raise ValueError(f"{param_name!r} is not a parameter of this encoder")
        return self._layer_ids[param_name]

    def no_weight_decay(self) -> set[str]:
        """Parameters exempt from weight decay besides norms and biases (timm's hook).

        The position embedding is a fixed buffer, so only the class token is listed.
        """
        return {"cls_token"}

    def forward_features(self, x: torch.Tensor, ids_keep: torch.Tensor | None = None) -> torch.Tensor:
        """Encode images, optionally keeping only some patch tokens.

        Args:
            x: Images (B, C, H, W) with H = W = ``cfg.img_size``.
            ids_keep: Optional (B, L') indices of the patches to keep, chosen after positions are added;
                the encoder then attends over those L' patches only.

        Returns:
            Tokens (B, 1 + L', D), class token first; normalized per token when ``pool == "cls"``, not
            yet normalized when ``pool == "avg"`` (see the class docstring).
        """
        if x.shape[-2:] != (self.cfg.img_size, self.cfg.img_size):
            raise ValueError(f"expected {self.cfg.img_size}x{self.cfg.img_size} images, got {tuple(x.shape)}")
        x = self.patch_embed(x) + self.pos_embed[:, 1:, :]  # (B, L, D)
        B, _, D = x.shape
        if ids_keep is not None:
            x = torch.gather(x, 1, ids_keep.unsqueeze(-1).expand(-1, -1, D))  # (B, L', D)
        cls = (self.cls_token + self.pos_embed[:, :1, :]).expand(B, -1, -1)  # (B, 1, D)
        x = torch.cat([cls, x], dim=1)  # (B, 1+L', D)
        for blk in self.blocks:
            x = blk(x)  # (B, 1+L', D)
        return self.norm(x) if self.pool == "cls" else x  # (B, 1+L', D)

    def forward_latent(self, x: torch.Tensor, ids_keep: torch.Tensor | None = None) -> torch.Tensor:
        """Per-token normalized tokens (B, 1 + L', D) whatever the pool: the MAE encoder's output."""
        tokens = self.forward_features(x, ids_keep)  # (B, 1+L', D)
        return self.norm(tokens) if self.pool == "avg" else tokens  # (B, 1+L', D)

    def forward_pool(self, tokens: torch.Tensor) -> torch.Tensor:
        """Pool `forward_features` tokens (B, 1 + L', D) into one feature per image (B, D)."""
        if self.pool == "avg":
            return self.norm(tokens[:, 1:, :].mean(dim=1))  # (B, D)
        return tokens[:, 0]  # (B, D)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled features (B, D) of images (B, C, H, W)."""
        return self.forward_pool(self.forward_features(x))  # (B, D)
