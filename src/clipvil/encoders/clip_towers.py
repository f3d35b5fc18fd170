"""CLIP image towers (open_clip) as grid-feature encoders.

- ResNet towers give the layer4 map, before the attention pool (stride 32).
- ViT towers give the patch tokens (CLS kept apart) of the last block — after the final LayerNorm where
  open_clip applies it to its tokens (not for towers that pool before it, or whose LayerNorm belongs to an
  attentional pooler), so they equal open_clip's own tokens at the native size — or of an earlier block (e.g.
  the penultimate), without it. Any input size works, square or not: the learned positional grid is bilinearly
  resized to the input's grid and *used*. Official bugs record: in CLIP-ViL's captioning extraction script before its
  fix (pull request #14), the resized position table was assigned to `.weight` while the forward pass used
  the untouched zero tensor — the ViT features had no positions, which is what degraded the paper's ViT rows.
  In its VQA extraction scripts as released, the ViT branch cannot run (it reads the attention pool that a
  ViT does not have) and the resize targets a square grid.
- Other open_clip towers built on timm trunks with a convolutional map (ConvNeXt) give the trunk's last map.

The pooled embedding always comes from the same forward as the grid, over the real (unpadded) cells only.
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
from clipvil.encoders.tower import Activation, Tower, WeightsInfo, batch_masks, real_extent
from clipvil.types import GridFeatures

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def _square(size: int | Sequence[int]) -> int:
    return int(size if isinstance(size, int) else size[0])


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


class ClipResNetTower(Tower):
    """A CLIP ModifiedResNet: layer4 grid [B, h*w, C] at stride 32, pooled = attention pool over real cells."""

    def __init__(self, name: str, visual: ModifiedResNet, weights: WeightsInfo, trainable: bool = False) -> None:
        super().__init__(
            name=name, stride=32, dim=int(visual.attnpool.k_proj.in_features),
            embed_dim=int(visual.attnpool.c_proj.out_features), native_size=_square(visual.image_size),
            mean=CLIP_MEAN, std=CLIP_STD, layer="layer4", weights=weights, trainable=trainable,
        )
        self.visual = visual
        self._settle()

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


class ClipViTTower(Tower):
    """A CLIP VisionTransformer: patch tokens [B, h*w, width] of block `block` (-1 last, -2 penultimate)."""

    def __init__(
        self, name: str, visual: VisionTransformer, weights: WeightsInfo, activation: Activation,
        trainable: bool = False, block: int = -1,
    ) -> None:
        n_blocks = len(visual.transformer.resblocks)
        if not -n_blocks <= block < n_blocks:
            raise ValueError(f"{name}: block {block} out of range for {n_blocks} blocks")
        block = block % n_blocks
        final = block == n_blocks - 1
        super().__init__(
            name=name, stride=int(visual.patch_size[0]), dim=int(visual.conv1.out_channels),
            embed_dim=int(visual.proj.shape[1]) if visual.proj is not None else int(visual.conv1.out_channels),
            native_size=_square(visual.image_size), mean=CLIP_MEAN, std=CLIP_STD,
            layer="last" if final else f"block{block}", weights=weights, trainable=trainable, activation=activation,
        )
        self.block, self.final_norm = block, final
        self.native_grid = tuple(int(g) for g in visual.grid_size)
        self.visual = visual
        self._settle()

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

    def _pooled(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """open_clip's own pooling of the last block's output x [B, 1+N, W], restricted to the real patches."""
        v, padded = self.visual, not bool(mask.all())
        if v.attn_pool is not None and padded:
            raise ValueError(f"{self.name}: the pooled embedding of padded images is not supported for towers "
                             "with an attentional pooler (CoCa): it would attend to the padding")
        if v.attn_pool is None and v.pool_type == "avg":  # mean of the patch tokens: over the real ones only
            x = x if v.final_ln_after_pool else v.ln_post(x)  # [B, 1+N, W]
            weights = mask.unsqueeze(-1).to(x.dtype)  # [B, N, 1]
            emb = (x[:, 1:] * weights).sum(1) / weights.sum(1).clamp(min=1.0)  # [B, W]
            emb = v.ln_post(emb) if v.final_ln_after_pool else emb  # [B, W]
        else:  # CLS token (it attended to the real patches only) or the attentional pooler
            emb, _ = v._pool(x)  # [B, W]
        return emb @ v.proj if v.proj is not None else emb  # [B, D]

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
        x, inter = v.transformer.forward_intermediates(x, attn_mask=attn_mask, indices=[self.block],
                                                       stop_early=not pooled)
        tokens = inter[0][:, 1:]  # [B, N, W]
        if self.final_norm and v.attn_pool is None and not v.final_ln_after_pool:  # as open_clip's own tokens
            tokens = v.ln_post(tokens)  # [B, N, W]
        emb = self._pooled(x, mask) if pooled else None  # [B, D]
        return GridFeatures(tokens, mask, (h, w), emb)


class ClipTimmTower(Tower):
    """An open_clip tower built on a timm trunk with a convolutional map (ConvNeXt): the trunk's last map as the
    grid; pooled = the model's own head (pool, norm, projection) over each image's real cells."""

    def __init__(self, name: str, visual: nn.Module, weights: WeightsInfo, trainable: bool = False) -> None:
        info = visual.trunk.feature_info[-1]
        super().__init__(
            name=name, stride=int(info["reduction"]), dim=int(info["num_chs"]),
            embed_dim=int(visual.head[-1].out_features) if hasattr(visual.head[-1], "out_features") else None,
            native_size=_square(visual.image_size), mean=CLIP_MEAN, std=CLIP_STD, layer="trunk",
            weights=weights, trainable=trainable,
        )
        self.visual = visual
        self._settle()

    def _pooled(self, fmap: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        v = self.visual
        if bool(mask.all()):
            return v.head(v.trunk.forward_head(fmap))  # [B, D]: exactly open_clip's visual(x)
        h, w = fmap.shape[-2:]
        crops = []
        for i in range(fmap.shape[0]):  # each image's real cells are a top-left block of its own size
            rows, cols = real_extent(mask[i], (h, w))
            crops.append(v.head(v.trunk.forward_head(fmap[i:i + 1, :, :rows, :cols])))  # [1, D]
        return torch.cat(crops)  # [B, D]

    def forward(
        self, pixels: torch.Tensor, content_hw: Sequence[tuple[int, int]] | None = None, pooled: bool = False
    ) -> GridFeatures:
        fmap = self.visual.trunk.forward_features(pixels)  # [B, C, h, w]
        b, _, h, w = fmap.shape
        mask = batch_masks(content_hw, b, (h, w), self.stride, fmap.device)  # [B, N]
        emb = self._pooled(fmap, mask) if pooled else None  # [B, D]
        return GridFeatures(fmap.flatten(2).transpose(1, 2), mask, (h, w), emb)
