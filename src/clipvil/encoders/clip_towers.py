"""CLIP image towers (open_clip) as grid-feature encoders.

- ResNet towers give the layer4 map, before the attention pool (stride 32).
- ViT towers give the patch tokens (CLS kept apart) of the last block — after the final LayerNorm, so
  they equal open_clip's own tokens at the native size — or of an earlier block (e.g. the penultimate),
  without it. Any input size works, square or not: the learned positional grid is bilinearly resized to
  the input's grid and *used* (the official code's resize produced zero position embeddings).
- Other open_clip towers built on timm trunks (ConvNeXt, ...) give their trunk's last feature map.

Weights stay in fp32 (the official code loaded CLIP in fp16 by default); callers pick autocast if they want.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from open_clip.modified_resnet import AttentionPool2d, ModifiedResNet
from open_clip.transformer import VisionTransformer
from torch import nn

from clipvil.encoders.posembed import resize_grid_embedding
from clipvil.encoders.preprocess import grid_mask
from clipvil.types import GridFeatures

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def batch_masks(
    content_hw: Sequence[tuple[int, int]] | None, batch: int, grid_hw: tuple[int, int], stride: int, device: torch.device
) -> torch.Tensor:
    """[B, h*w] validity of grid cells given each image's real (unpadded) pixel size; all True if None."""
    if content_hw is None:
        return torch.ones(batch, grid_hw[0] * grid_hw[1], dtype=torch.bool, device=device)  # [B, N]
    return torch.stack([grid_mask(hw, grid_hw, stride) for hw in content_hw]).to(device)  # [B, N]


class _Frozen(nn.Module):
    """Keeps a frozen tower in eval mode (BatchNorm statistics and dropout fixed) whatever .train() says."""

    trainable: bool

    def train(self, mode: bool = True) -> _Frozen:
        return super().train(mode and self.trainable)


def masked_attention_pool(
    pool: AttentionPool2d, fmap: torch.Tensor, mask: torch.Tensor, pos: torch.Tensor
) -> torch.Tensor:
    """CLIP's attention pool over the valid cells only, with a position table `pos` [1 + h*w, C]."""
    b = fmap.shape[0]
    x = fmap.flatten(2).permute(2, 0, 1)  # [hw, B, C]
    weights = mask.T.unsqueeze(-1).to(x.dtype)  # [hw, B, 1]
    mean = (x * weights).sum(0, keepdim=True) / weights.sum(0, keepdim=True).clamp(min=1.0)  # [1, B, C]
    x = torch.cat([mean, x], dim=0) + pos[:, None, :].to(x.dtype)  # [1 + hw, B, C]
    ignore = torch.cat([torch.zeros(b, 1, dtype=torch.bool, device=mask.device), ~mask], dim=1)  # [B, 1 + hw]
    out, _ = F.multi_head_attention_forward(
        query=x[:1], key=x, value=x, embed_dim_to_check=x.shape[-1], num_heads=pool.num_heads,
        q_proj_weight=pool.q_proj.weight, k_proj_weight=pool.k_proj.weight, v_proj_weight=pool.v_proj.weight,
        in_proj_weight=None, in_proj_bias=torch.cat([pool.q_proj.bias, pool.k_proj.bias, pool.v_proj.bias]),
        bias_k=None, bias_v=None, add_zero_attn=False, dropout_p=0.0,
        out_proj_weight=pool.c_proj.weight, out_proj_bias=pool.c_proj.bias, use_separate_proj_weight=True,
        training=False, need_weights=False, key_padding_mask=ignore,
    )  # [1, B, D]
    return out[0]  # [B, D]


class ClipResNetTower(_Frozen):
    """A CLIP ModifiedResNet: layer4 grid [B, h*w, C] at stride 32, pooled = attention pool (projected)."""

    stride = 32

    def __init__(self, name: str, visual: ModifiedResNet, trainable: bool = False) -> None:
        super().__init__()
        self.name, self.visual, self.trainable = name, visual, trainable
        self.native_size = int(visual.image_size if isinstance(visual.image_size, int) else visual.image_size[0])
        self.dim = int(visual.attnpool.k_proj.in_features)
        self.embed_dim = int(visual.attnpool.c_proj.out_features)
        self.mean, self.std = CLIP_MEAN, CLIP_STD
        self.layer = "layer4"
        self.requires_grad_(trainable)
        self.train(trainable)

    def forward(
        self, pixels: torch.Tensor, content_hw: Sequence[tuple[int, int]] | None = None, pooled: bool = False
    ) -> GridFeatures:
        out = self.visual.forward_intermediates(pixels, indices=[4], intermediates_only=True)
        fmap = out["image_intermediates"][0]  # [B, C, h, w]
        b, _, h, w = fmap.shape
        mask = batch_masks(content_hw, b, (h, w), self.stride, fmap.device)  # [B, N]
        emb = None
        if pooled:
            native = self.native_size // self.stride
            pos = resize_grid_embedding(self.visual.attnpool.positional_embedding, (native, native), (h, w))
            emb = masked_attention_pool(self.visual.attnpool, fmap, mask, pos)  # [B, D]
        feats = fmap.flatten(2).transpose(1, 2)  # [B, N, C]
        return GridFeatures(feats, mask, (h, w), emb)


class ClipViTTower(_Frozen):
    """A CLIP VisionTransformer: patch tokens [B, h*w, width] of block `block` (-1 last, -2 penultimate)."""

    def __init__(self, name: str, visual: VisionTransformer, trainable: bool = False, block: int = -1) -> None:
        super().__init__()
        n_blocks = len(visual.transformer.resblocks)
        if not -n_blocks <= block < n_blocks:
            raise ValueError(f"{name}: block {block} out of range for {n_blocks} blocks")
        self.name, self.visual, self.trainable = name, visual, trainable
        self.block = block % n_blocks
        self.final_norm = self.block == n_blocks - 1
        self.stride = int(visual.patch_size[0])
        self.native_grid = tuple(int(g) for g in visual.grid_size)
        self.native_size = int(visual.image_size[0])
        self.dim = int(visual.conv1.out_channels)
        self.embed_dim = int(visual.proj.shape[1]) if visual.proj is not None else self.dim
        self.mean, self.std = CLIP_MEAN, CLIP_STD
        self.layer = "last" if self.final_norm else f"block{self.block}"
        self.requires_grad_(trainable)
        self.train(trainable)

    def position_table(self, grid_hw: tuple[int, int]) -> torch.Tensor:
        """[1 + h*w, width] positions for a (h, w) grid: the learned table, bilinearly resized."""
        return resize_grid_embedding(self.visual.positional_embedding, self.native_grid, grid_hw)

    def _padding_attn_mask(self, mask: torch.Tensor) -> torch.Tensor | None:
        """Additive [B*heads, L, L] mask that hides padded patches as keys; None when nothing is padded."""
        if bool(mask.all()):
            return None
        b, n = mask.shape
        heads = self.visual.transformer.resblocks[0].attn.num_heads
        keys = torch.cat([torch.ones(b, 1, dtype=torch.bool, device=mask.device), mask], dim=1)  # [B, L]
        bias = torch.zeros(b, 1, n + 1, device=mask.device).masked_fill(~keys[:, None, :], float("-inf"))
        return bias.expand(b, n + 1, n + 1).repeat_interleave(heads, dim=0)  # [B*heads, L, L]

    def forward(
        self, pixels: torch.Tensor, content_hw: Sequence[tuple[int, int]] | None = None, pooled: bool = False
    ) -> GridFeatures:
        v = self.visual
        x = v.conv1(pixels)  # [B, W, h, w]
        b, width, h, w = x.shape
        mask = batch_masks(content_hw, b, (h, w), self.stride, x.device)  # [B, N]
        x = x.flatten(2).transpose(1, 2)  # [B, N, W]
        cls = v.class_embedding.to(x.dtype).expand(b, 1, width)  # [B, 1, W]
        x = torch.cat([cls, x], dim=1) + self.position_table((h, w)).to(x.dtype)  # [B, 1+N, W]
        x = v.ln_pre(v.patch_dropout(x))  # [B, 1+N, W]
        attn_mask = self._padding_attn_mask(mask)
        x, inter = v.transformer.forward_intermediates(x, attn_mask=attn_mask, indices=[self.block], stop_early=not pooled)
        tokens = inter[0][:, 1:]  # [B, N, W]
        if self.final_norm:
            tokens = v.ln_post(tokens)  # [B, N, W]
        emb = None
        if pooled:
            emb, _ = v._pool(x)  # [B, W]: open_clip's own pooling (CLS + ln_post, or its variant)
            emb = emb @ v.proj if v.proj is not None else emb  # [B, D]
        return GridFeatures(tokens, mask, (h, w), emb)


class ClipTimmTower(_Frozen):
    """An open_clip tower built on a timm trunk (ConvNeXt, ...): the trunk's last feature map as the grid."""

    def __init__(self, name: str, visual: nn.Module, trainable: bool = False) -> None:
        super().__init__()
        self.name, self.visual, self.trainable = name, visual, trainable
        info = visual.trunk.feature_info[-1]
        self.stride, self.dim = int(info["reduction"]), int(info["num_chs"])
        size = visual.image_size
        self.native_size = int(size if isinstance(size, int) else size[0])
        self.embed_dim = None
        self.mean, self.std = CLIP_MEAN, CLIP_STD
        self.layer = "trunk"
        self.requires_grad_(trainable)
        self.train(trainable)

    def forward(
        self, pixels: torch.Tensor, content_hw: Sequence[tuple[int, int]] | None = None, pooled: bool = False
    ) -> GridFeatures:
        fmap = self.visual.trunk.forward_features(pixels)  # [B, C, h, w]
        b, _, h, w = fmap.shape
        mask = batch_masks(content_hw, b, (h, w), self.stride, fmap.device)  # [B, N]
        emb = self.visual(pixels) if pooled else None  # [B, D]
        return GridFeatures(fmap.flatten(2).transpose(1, 2), mask, (h, w), emb)
