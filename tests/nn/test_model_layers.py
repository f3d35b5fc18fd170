"""Shared blocks: grid input checks, masked softmax, attention pooling."""

from __future__ import annotations

import pytest
import torch

from clipvil.nn.layers import AttentionPool, grid_inputs, masked_softmax
from clipvil.types import GridFeatures


def test_masked_softmax_gives_masked_positions_exactly_zero() -> None:
    scores = torch.tensor([[1e4, 2.0, -3.0, 0.5]])  # [1, 4] the largest score is masked
    mask = torch.tensor([[False, True, False, True]])
    weights = masked_softmax(scores, mask, dim=1)  # [1, 4]
    assert weights[0, 0] == 0 and weights[0, 2] == 0
    torch.testing.assert_close(weights[0, [1, 3]], torch.tensor([2.0, 0.5]).softmax(0))


def test_grid_inputs_zero_padding_and_check_batches() -> None:
    feats = torch.full((2, 3, 4), float("nan"))  # [B, N, C]
    feats[:, 0] = 1.0
    grid = GridFeatures(feats, torch.tensor([[True, False, False], [True, True, False]]), (1, 3))
    with pytest.raises(ValueError, match="grid batch size 2 != question batch size 3"):
        grid_inputs(grid, 3)
    with pytest.raises(ValueError, match=r"batch item\(s\) \[1\] have no real cell"):
        grid_inputs(GridFeatures(feats, torch.tensor([[True, False, False], [False] * 3]), (1, 3)), 2)
    grid.feats[1, 1] = 2.0
    zeroed, mask = grid_inputs(grid, 2)  # [B, N, C], [B, N]
    assert mask is grid.mask or torch.equal(mask, grid.mask)
    assert zeroed[0, 0].eq(1).all() and zeroed[0, 1:].eq(0).all()
    assert zeroed[1, 1].eq(2).all() and zeroed[1, 2].eq(0).all()


def test_attention_pool_is_a_masked_weighted_sum_per_glimpse() -> None:
    pool = AttentionPool(dim=3, mid_dim=5, glimpses=2, dropout=0.0)
    x = torch.randn(1, 4, 3)  # [B, L, D]
    mask = torch.tensor([[True, True, False, True]])
    out = pool(x, mask)  # [1, 2 * 3]
    assert pool.out_dim == 6 and out.shape == (1, 6)
    scores = pool.score(torch.relu(pool.fc(x[0, [0, 1, 3]])))  # [3, G]
    expected = scores.softmax(0).T @ x[0, [0, 1, 3]]  # [G, D]
    torch.testing.assert_close(out[0], expected.flatten())
