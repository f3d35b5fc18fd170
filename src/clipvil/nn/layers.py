"""Small blocks shared by the VQA heads: grid input checks, masked softmax, attention pooling.

Masks follow `clipvil.types.GridFeatures`: True marks a real element (a grid cell with image content,
a question token), False marks padding. Padding never influences a real output: padded grid cells are
zeroed before any layer sees them (so even inf/NaN padding cannot leak through `0 * x`), and every
softmax over cells or tokens gives padded positions a weight of exactly zero.
"""

from __future__ import annotations

import torch
from torch import nn

from clipvil.types import GridFeatures


def grid_inputs(grid: GridFeatures, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The grid's features with padded cells set to zero, and its mask (True = real cell).

    Raises ValueError when the batch size differs from the question batch or when an image has no real
    cell (attention over nothing is undefined).
    """
    if grid.batch_size != batch_size:
        raise ValueError(f"grid batch size {grid.batch_size} != question batch size {batch_size}")
    mask = grid.mask.to(grid.feats.device)  # [B, N]
    empty = ~mask.any(dim=1)  # [B]
    if bool(empty.any()):
        rows = empty.nonzero().flatten().tolist()
        raise ValueError(f"GridFeatures.mask: batch item(s) {rows} have no real cell")
    feats = grid.feats.masked_fill(~mask.unsqueeze(-1), 0.0)  # [B, N, C]
    return feats, mask


def masked_softmax(scores: torch.Tensor, mask: torch.Tensor, dim: int) -> torch.Tensor:
    """Softmax of `scores` along `dim` where positions with mask False get weight exactly 0.

    `mask` must broadcast against `scores`; every slice along `dim` needs at least one True.
    """
    scores = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)  # same shape as scores
    return torch.softmax(scores, dim=dim)


class AttentionPool(nn.Module):
    """Self-attentive pooling of a sequence into `glimpses` weighted sums, concatenated.

    Scores come from a two-layer MLP (Linear → ReLU → Dropout → Linear) on each element; each glimpse
    is a masked softmax over the sequence. Used by MCAN's AttFlat (before its merge projection) and by
    Pythia's question attention (MMF's AttentionTextEmbedding, whose kernel-1 convolutions are linears).
    """

    def __init__(self, dim: int, mid_dim: int, glimpses: int, dropout: float) -> None:
        super().__init__()
        self.glimpses = glimpses
        self.fc = nn.Linear(dim, mid_dim)
        self.dropout = nn.Dropout(dropout)
        self.score = nn.Linear(mid_dim, glimpses)

    @property
    def out_dim(self) -> int:
        """Width of the pooled output: glimpses * dim."""
        return self.glimpses * self.fc.in_features

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """x [B, L, D], mask [B, L] (True = real) → [B, glimpses * D]."""
        scores = self.score(self.dropout(torch.relu(self.fc(x))))  # [B, L, G]
        weights = masked_softmax(scores, mask.unsqueeze(-1), dim=1)  # [B, L, G]
        pooled = torch.einsum("blg,bld->bgd", weights, x)  # [B, G, D]
        return pooled.flatten(1)  # [B, G * D]
