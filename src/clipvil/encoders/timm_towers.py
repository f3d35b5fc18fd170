"""The ImageNet baseline tower: a timm ResNet-50 whose last feature map (stride 32, 2048-d) is the grid."""

from __future__ import annotations

from collections.abc import Sequence

import timm
import torch
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD

from clipvil.encoders.clip_towers import _Frozen, batch_masks
from clipvil.types import GridFeatures


class TimmGridTower(_Frozen):
    """A timm classification backbone; pooled = the mean of the valid cells (its pre-logits)."""

    def __init__(self, name: str, timm_name: str, trainable: bool = False, native_size: int = 224) -> None:
        super().__init__()
        self.name, self.trainable = name, trainable
        self.model = timm.create_model(timm_name, pretrained=False)
        info = self.model.feature_info[-1]
        self.stride, self.dim = int(info["reduction"]), int(info["num_chs"])
        self.embed_dim = self.dim
        self.native_size = native_size
        self.mean, self.std = tuple(IMAGENET_DEFAULT_MEAN), tuple(IMAGENET_DEFAULT_STD)
        self.layer = "layer4"
        self.requires_grad_(trainable)
        self.train(trainable)

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
