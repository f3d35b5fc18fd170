"""The seams between layers, as plain dataclasses. Everything above imports these; they import torch only."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class GridFeatures:
    """Visual features of a batch of images laid out on a grid.

    feats:  [B, N, C] features, N = h * w cells in row-major order (row 0 first).
    mask:   [B, N] bool, True where a cell holds real image content (False on padding).
    hw:     (h, w), the grid's height and width in cells; N == h * w.
    pooled: optional [B, D] pooled image embedding (CLIP's projected embedding), when asked for.
    """

    feats: torch.Tensor
    mask: torch.Tensor
    hw: tuple[int, int]
    pooled: torch.Tensor | None = None

    def __post_init__(self) -> None:
        if self.feats.dim() != 3:
            raise ValueError(f"GridFeatures.feats must be [B, N, C], got shape {tuple(self.feats.shape)}")
        b, n, _ = self.feats.shape
        if tuple(self.mask.shape) != (b, n):
            raise ValueError(f"GridFeatures.mask must be [B, N] = {(b, n)}, got {tuple(self.mask.shape)}")
        if self.hw[0] * self.hw[1] != n:
            raise ValueError(f"GridFeatures.hw {self.hw} does not multiply to N = {n}")
        if self.mask.dtype != torch.bool:
            raise ValueError(f"GridFeatures.mask must be bool, got {self.mask.dtype}")

    @property
    def batch_size(self) -> int:
        return int(self.feats.shape[0])

    @property
    def dim(self) -> int:
        """Channel width C of the grid features."""
        return int(self.feats.shape[-1])

    def to(self, device: torch.device | str, dtype: torch.dtype | None = None) -> GridFeatures:
        """Moves every tensor to `device`; `dtype` (if given) applies to the float tensors only."""
        pooled = None if self.pooled is None else self.pooled.to(device=device, dtype=dtype)
        return GridFeatures(self.feats.to(device=device, dtype=dtype), self.mask.to(device), self.hw, pooled)

    def as_map(self) -> torch.Tensor:
        """The features as an image-like map [B, C, h, w]."""
        b, _, c = self.feats.shape
        return self.feats.transpose(1, 2).reshape(b, c, self.hw[0], self.hw[1])  # [B, C, h, w]
