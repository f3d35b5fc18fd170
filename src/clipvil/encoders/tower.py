"""The base class of every grid-feature tower, and the facts a feature store's provenance records about it.

Every fact (name, stride, width, embedding width, native size, normalisation, layer, weights, activation) is a
constructor argument: a built tower is complete, nothing is attached to it afterwards.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from clipvil.encoders.preprocess import grid_mask
from clipvil.types import GridFeatures


@dataclass(frozen=True)
class WeightsInfo:
    """Where a tower's weights came from (goes into feature-store provenance)."""

    path: str | None  # the file, or None for random initialisation
    sha256: str  # hex digest of the file, or "random-seed0" for seeded random initialisation
    format: str  # "openai-torchscript", "torch", "safetensors" or "random"


@dataclass(frozen=True)
class Activation:
    """The MLP activation a transformer tower runs with, and why it was chosen (goes into provenance)."""

    name: str  # "quick_gelu" (OpenAI's CLIP and some open_clip runs) or "gelu"
    source: str  # what decided it, e.g. "OpenAI TorchScript archive", "model name", "open_clip config"


def batch_masks(
    content_hw: Sequence[tuple[int, int]] | None, batch: int, grid_hw: tuple[int, int], stride: int,
    device: torch.device,
) -> torch.Tensor:
    """[B, h*w] validity of grid cells given each image's real (unpadded) pixel size; all True if None."""
    if content_hw is None:
        return torch.ones(batch, grid_hw[0] * grid_hw[1], dtype=torch.bool, device=device)  # [B, N]
    if len(content_hw) != batch:
        raise ValueError(f"content_hw has {len(content_hw)} sizes for a batch of {batch} images")
    return torch.stack([grid_mask(hw, grid_hw, stride) for hw in content_hw]).to(device)  # [B, N]


def real_extent(mask: torch.Tensor, grid_hw: tuple[int, int]) -> tuple[int, int]:
    """(rows, cols) of the top-left block of real cells of one image's [h*w] mask (see grid_mask)."""
    m = mask.view(grid_hw)  # [h, w]
    return int(m.any(1).sum()), int(m.any(0).sum())


class Tower(nn.Module):
    """Images [B, 3, H, W] → GridFeatures; the base of every registered tower (see clipvil.encoders.protocol).

    A frozen tower (trainable=False) has no gradients and stays in eval mode (BatchNorm statistics and dropout
    fixed) whatever `.train()` says. Subclasses assign their modules, then call `self._settle()`.
    """

    def __init__(
        self, *, name: str, stride: int, dim: int, embed_dim: int | None, native_size: int,
        mean: tuple[float, ...], std: tuple[float, ...], layer: str, weights: WeightsInfo, trainable: bool,
        activation: Activation | None = None,
    ) -> None:
        super().__init__()
        self.name = name  # registered name, e.g. "RN50", "ViT-B-32-quickgelu", "imagenet-rn50"
        self.stride = stride  # pixels per grid cell
        self.dim = dim  # channel width C of the grid
        self.embed_dim = embed_dim  # width of the pooled embedding; None when the tower has none
        self.native_size = native_size  # the square input size the tower was trained at
        self.mean, self.std = tuple(mean), tuple(std)  # per-channel normalisation (0..1 scale)
        self.layer = layer  # which layer the grid comes from ("layer4", "last", "block10", "trunk")
        self.weights_info = weights
        self.trainable = trainable
        self.activation = activation  # None when the tower has no GELU/QuickGELU choice (ResNets, timm trunks)

    def _settle(self) -> None:
        """Applies `trainable` to the (now assigned) modules: gradients and train/eval mode."""
        self.requires_grad_(self.trainable)
        self.train(self.trainable)

    def train(self, mode: bool = True) -> Tower:
        return super().train(mode and self.trainable)

    def forward(
        self, pixels: torch.Tensor, content_hw: Sequence[tuple[int, int]] | None = None, pooled: bool = False
    ) -> GridFeatures:
        """pixels [B, 3, H, W] normalised; content_hw: each image's unpadded (h, w) in pixels, for the mask;
        pooled: also return the pooled embedding, computed from this same forward over the real cells only."""
        raise NotImplementedError
