"""The plugin's channel-wise concatenation of two encoders' grids: masks, resizing, pooled embeddings."""

from __future__ import annotations

import pytest
import torch

from clipvil.engine.grid_source import concat_grids
from clipvil.types import GridFeatures


def _grid(b: int, hw: tuple[int, int], c: int, seed: int, pooled: int | None = None) -> GridFeatures:
    g = torch.Generator().manual_seed(seed)
    feats = torch.randn(b, hw[0] * hw[1], c, generator=g)  # [B, N, C]
    mask = torch.ones(b, hw[0] * hw[1], dtype=torch.bool)  # [B, N]
    emb = torch.randn(b, pooled, generator=g) if pooled else None
    return GridFeatures(feats, mask, hw, emb)


def test_same_size_grids_are_concatenated_and_padding_of_either_part_is_zeroed() -> None:
    a, b = _grid(2, (2, 3), 4, 0, pooled=5), _grid(2, (2, 3), 3, 1, pooled=2)
    a.mask[0, 5] = False  # image 0: the last cell is padding in the first store
    b.mask[1, 0] = False  # image 1: the first cell is padding in the second store
    both = concat_grids([a, b])
    assert both.feats.shape == (2, 6, 7) and both.hw == (2, 3)
    expected_mask = torch.ones(2, 6, dtype=torch.bool)
    expected_mask[0, 5] = expected_mask[1, 0] = False
    assert torch.equal(both.mask, expected_mask)
    assert torch.equal(both.feats[0, 0], torch.cat([a.feats[0, 0], b.feats[0, 0]]))
    assert torch.equal(both.feats[0, 5], torch.zeros(7)) and torch.equal(both.feats[1, 0], torch.zeros(7))
    assert torch.equal(both.pooled, torch.cat([a.pooled, b.pooled], dim=1))


def test_a_finer_grid_is_averaged_down_and_its_mask_taken_by_nearest_cell() -> None:
    """4x4 -> 2x2 bilinear (align_corners=False) at scale 2 is the mean of each 2x2 block; the mask takes each
    block's top-left cell (nearest)."""
    coarse, fine = _grid(1, (2, 2), 2, 0, pooled=3), _grid(1, (4, 4), 3, 1)
    fine.mask.view(1, 4, 4)[0, 0, 2] = False  # top-left cell of block (0, 1): that block becomes padding
    fine.mask.view(1, 4, 4)[0, 3, 3] = False  # bottom-right cell of block (1, 1): the block stays real
    both = concat_grids([coarse, fine])
    assert both.feats.shape == (1, 4, 5) and both.hw == (2, 2)
    blocks = fine.feats.view(4, 4, 3).reshape(2, 2, 2, 2, 3).permute(0, 2, 1, 3, 4).reshape(2, 2, 4, 3)
    means = blocks.mean(dim=2).reshape(4, 3)  # [4 cells, 3]
    assert torch.equal(both.mask, torch.tensor([[True, False, True, True]]))
    for cell in (0, 2, 3):
        torch.testing.assert_close(both.feats[0, cell, 2:], means[cell])
        assert torch.equal(both.feats[0, cell, :2], coarse.feats[0, cell])
    assert torch.equal(both.feats[0, 1], torch.zeros(5))
    assert both.pooled is None  # the second part has no pooled embedding


def test_parts_of_different_batches_are_refused() -> None:
    with pytest.raises(ValueError, match="plugin grids of 1 vs 2 images"):
        concat_grids([_grid(2, (2, 2), 2, 0), _grid(1, (2, 2), 2, 1)])
