"""The one interface every encoder obeys (a Protocol; every registered tower subclasses
clipvil.encoders.tower.Tower)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import torch

from clipvil.encoders.tower import Activation, WeightsInfo
from clipvil.types import GridFeatures


class Encoder(Protocol):
    """Images → GridFeatures. Every registered name is checked against this by one contract test."""

    name: str  # registered name, e.g. "RN50", "ViT-B-32", "imagenet-rn50"
    stride: int  # pixels per grid cell; grid = input size // stride
    dim: int  # channel width C of the grid features
    embed_dim: int | None  # width of the pooled embedding (CLIP's joint space), None if the tower has none
    native_size: int  # the square input size the tower was trained at
    mean: tuple[float, ...]  # per-channel normalisation mean (0..1 scale)
    std: tuple[float, ...]  # per-channel normalisation std
    layer: str  # which layer the grid comes from ("layer4", "last", "block10", ...)
    trainable: bool  # False: frozen, always in eval mode
    weights_info: WeightsInfo  # where the weights came from (path, sha256, format)
    activation: Activation | None  # ViTs: QuickGELU or GELU and why; None where the tower has no such choice

    def __call__(
        self, pixels: torch.Tensor, content_hw: Sequence[tuple[int, int]] | None = None, pooled: bool = False
    ) -> GridFeatures:
        """pixels [B, 3, H, W] normalised; content_hw: each image's unpadded (h, w) in pixels, for the mask."""
        ...
