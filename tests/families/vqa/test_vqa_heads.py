"""Contract every VQA head obeys: masks respected, any grid width, gradients, determinism, learning."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from vqa_heads_testlib import ANSWERS, HeadFactory, random_grid, random_tokens

from clipvil.types import GridFeatures


def test_logits_shape_for_any_grid_width(make_head: HeadFactory) -> None:
    for dim in (2048, 2560, 768):
        model = make_head(dim).eval()
        logits = model(random_grid(3, (2, 5), dim), random_tokens(3, 7, [7, 4, 1]))  # [B, A]
        assert logits.shape == (3, ANSWERS)
        assert torch.isfinite(logits).all()


def test_batch_of_one_matches_its_row_in_a_batch(make_head: HeadFactory) -> None:
    model = make_head(64).eval()
    grid, tokens = random_grid(3, (3, 4), 64), random_tokens(3, 6, [6, 3, 5])
    full = model(grid, tokens)  # [3, A]
    one = model(GridFeatures(grid.feats[1:2], grid.mask[1:2], grid.hw), tokens[1:2, :3])  # [1, A]
    assert one.shape == (1, ANSWERS)
    torch.testing.assert_close(one[0], full[1], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("fill", [1e30, float("inf"), float("nan")])
def test_appended_padded_cells_change_nothing(make_head: HeadFactory, fill: float) -> None:
    model = make_head(96).eval()
    grid, tokens = random_grid(2, (3, 4), 96), random_tokens(2, 5, [5, 2])
    extra = torch.full((2, 8, 96), fill)  # [B, 8, C] two more rows of 4 cells
    padded = GridFeatures(
        torch.cat([grid.feats, extra], dim=1),  # [B, 20, C]
        torch.cat([grid.mask, torch.zeros(2, 8, dtype=torch.bool)], dim=1),  # [B, 20]
        (5, 4),
    )
    torch.testing.assert_close(model(padded, tokens), model(grid, tokens), atol=1e-5, rtol=1e-5)


def test_masked_cells_anywhere_equal_removing_them(make_head: HeadFactory) -> None:
    model = make_head(32).eval()
    grid, tokens = random_grid(1, (4, 5), 32), random_tokens(1, 4)
    keep = torch.rand(20) > 0.4  # [N]
    keep[0] = True
    feats = grid.feats.clone()  # [1, N, C]
    feats[0, ~keep] = 1e6 * torch.randn(int((~keep).sum()), 32)
    masked = GridFeatures(feats, keep.unsqueeze(0), grid.hw)
    n_keep = int(keep.sum())
    removed = GridFeatures(grid.feats[:, keep], torch.ones(1, n_keep, dtype=torch.bool), (1, n_keep))
    torch.testing.assert_close(model(masked, tokens), model(removed, tokens), atol=1e-5, rtol=1e-5)


def test_question_padding_changes_nothing(make_head: HeadFactory) -> None:
    model = make_head(48).eval()
    grid, tokens = random_grid(2, (2, 3), 48), random_tokens(2, 6, [6, 3])
    longer = torch.cat([tokens, torch.zeros(2, 9, dtype=torch.long)], dim=1)  # [B, 15]
    torch.testing.assert_close(model(grid, longer), model(grid, tokens), atol=1e-5, rtol=1e-5)
    # the padded question alone, trimmed to its length, gives its row
    torch.testing.assert_close(
        model(GridFeatures(grid.feats[1:], grid.mask[1:], grid.hw), tokens[1:, :3])[0],
        model(grid, longer)[1],
        atol=1e-5,
        rtol=1e-5,
    )


def test_gradients_reach_every_parameter(make_head: HeadFactory) -> None:
    model = make_head(40).train()
    logits = model(random_grid(4, (2, 3), 40), random_tokens(4, 5, [5, 4, 3, 2]))  # [B, A]
    F.binary_cross_entropy_with_logits(logits, torch.rand(4, ANSWERS)).backward()
    assert [n for n, p in model.named_parameters() if p.grad is None] == []
    # The bias of a score that feeds a softmax over the same positions has an analytically zero gradient
    # (softmax is shift-invariant): only rounding makes it non-zero, so it is not asserted.
    zero = [n for n, p in model.named_parameters() if not bool(p.grad.abs().sum() > 0) and not n.endswith("score.bias")]
    assert zero == []


def test_eval_is_deterministic_and_train_dropout_is_not_silently_off(make_head: HeadFactory) -> None:
    model = make_head(40)
    grid, tokens = random_grid(2, (3, 3), 40), random_tokens(2, 6, [6, 2])
    model.eval()
    assert torch.equal(model(grid, tokens), model(grid, tokens))
    dropout = getattr(model.cfg, "dropout", 0.0)
    if dropout > 0:
        model.train()
        assert not torch.equal(model(grid, tokens), model(grid, tokens))


def test_tiny_batch_is_overfit_with_bce_on_soft_scores(make_head: HeadFactory) -> None:
    model = make_head(64).train()
    grid, tokens = random_grid(8, (3, 4), 64), random_tokens(8, 6, [6, 5, 4, 6, 3, 2, 6, 5])
    targets = torch.zeros(8, ANSWERS)  # [B, A] VQA-style soft scores: one answer per question, 0.3..1
    targets[torch.arange(8), torch.randint(0, ANSWERS, (8,))] = torch.tensor(
        [1.0, 0.3, 0.6, 0.9, 1.0, 0.3, 1.0, 0.6]
    )
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
    losses = []
    for _ in range(50):
        loss = F.binary_cross_entropy_with_logits(model(grid, tokens), targets) * ANSWERS
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.25 * losses[0], losses[::10]


def test_half_precision_features_and_bf16_autocast(make_head: HeadFactory) -> None:
    model = make_head(32).eval()
    grid, tokens = random_grid(2, (2, 2), 32), random_tokens(2, 3)
    ref = model(grid, tokens)  # [B, A]
    half = model(GridFeatures(grid.feats.half(), grid.mask, grid.hw), tokens)  # [B, A]
    torch.testing.assert_close(half, ref, atol=2e-2, rtol=2e-2)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low = model(grid, tokens)  # [B, A]
    assert torch.isfinite(low).all()
    torch.testing.assert_close(low.float(), ref, atol=0.1, rtol=0.1)


def test_bad_inputs_raise_clear_errors(make_head: HeadFactory) -> None:
    model = make_head(16).eval()
    grid, tokens = random_grid(2, (2, 2), 16), random_tokens(2, 3)
    empty_grid = GridFeatures(grid.feats, torch.tensor([[True] * 4, [False] * 4]), grid.hw)
    with pytest.raises(ValueError, match=r"batch item\(s\) \[1\] have no real cell"):
        model(empty_grid, tokens)
    with pytest.raises(ValueError, match="grid batch size 2 != question batch size 1"):
        model(grid, tokens[:1])
    with pytest.raises(ValueError, match="all padding"):
        model(grid, torch.tensor([[3, 0, 0], [0, 0, 0]]))
    with pytest.raises(ValueError, match="pad at the end"):
        model(grid, torch.tensor([[3, 0, 4], [5, 6, 0]]))
