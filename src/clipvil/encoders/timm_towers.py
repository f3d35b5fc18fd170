"""The ImageNet baseline tower: a timm ResNet-50 whose last feature map (stride 32, 2048-d) is the grid."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from torch import nn

from clipvil.encoders.tower import Tower, WeightsInfo, batch_masks
from clipvil.types import GridFeatures


class TimmGridTower(Tower):
    """A timm classification backbone (built by the registry); pooled = the mean of the real cells of the same
    forward (a ResNet's pre-logits: its global average pool, restricted to the unpadded cells)."""

    def __init__(
        self, name: str, model: nn.Module, weights: WeightsInfo, trainable: bool = False, native_size: int = 224
    ) -> None:
        info = model.feature_info[-1]
        super().__init__(
            name=name, stride=int(info["reduction"]), dim=int(info["num_chs"]), embed_dim=int(info["num_chs"]),
            native_size=native_size, mean=tuple(IMAGENET_DEFAULT_MEAN), std=tuple(IMAGENET_DEFAULT_STD),
            layer="layer4", weights=weights, trainable=trainable,
        )
        self.model = model
        self._settle()

    def forward(
        self, pixels: torch.Tensor, content_hw: Sequence[tuple[int, int]] | None = None, pooled: bool = False
    ) -> GridFeatures:
        fmap = self.model.forward_features(pixels)  # [B, C, h, w]
        b, _, h, w = fmap.shape
        mask = batch_masks(content_hw, b, (h, w), self.stride, fmap.device)  # [B, N]
        feats = fmap.flatten(2).transpose(1, 2)  # [B, N, C]
        emb = None
        if pooled:
            weights = mask.unsqueeze(-1).to(feats.dtype)  # [B, N, 1]
            emb = (feats * weights).sum(1) / weights.sum(1).clamp(min=1.0)  # [B, C]
        return GridFeatures(feats, mask, (h, w), emb)
