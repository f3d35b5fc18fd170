"""Resizing a learned positional grid to a new (possibly non-square) grid.

Official bugs record: in CLIP-ViL's captioning extraction script before its fix (pull request #14), the resized
position table was assigned to `.weight` while the forward pass used the untouched zero tensor — the ViT features
had no positions, which is what degraded the paper's ViT rows. In its VQA extraction scripts as released, the ViT
branch cannot run (it reads the attention pool that a ViT does not have) and the resize targets a square grid.
Here the interpolated table is returned and used, for any (h, w).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def resize_grid_embedding(
    pos: torch.Tensor, old_hw: tuple[int, int], new_hw: tuple[int, int], n_prefix: int = 1
) -> torch.Tensor:
    """Bilinearly resizes the grid part of a position table, keeping the `n_prefix` leading (CLS) rows.

    pos: [n_prefix + old_h*old_w, C] → returns [n_prefix + new_h*new_w, C] (the same tensor when sizes match).
    """
    if pos.shape[0] != n_prefix + old_hw[0] * old_hw[1]:
        raise ValueError(f"position table has {pos.shape[0]} rows, expected {n_prefix} + {old_hw[0]}x{old_hw[1]}")
    if tuple(old_hw) == tuple(new_hw):
        return pos
    prefix, grid = pos[:n_prefix], pos[n_prefix:]  # [P, C], [h*w, C]
    c = grid.shape[-1]
    grid = grid.reshape(1, old_hw[0], old_hw[1], c).permute(0, 3, 1, 2)  # [1, C, h, w]
    grid = F.interpolate(grid.float(), size=new_hw, mode="bilinear", align_corners=False)  # [1, C, H, W]
    grid = grid.permute(0, 2, 3, 1).reshape(new_hw[0] * new_hw[1], c).to(pos.dtype)  # [H*W, C]
    return torch.cat([prefix, grid], dim=0)  # [P + H*W, C]
