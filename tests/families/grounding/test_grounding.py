"""The grid grounding head and its loss: shapes, masks, content-relative geometry, hand-computed loss, overfit."""

from __future__ import annotations

import math

import pytest
import torch

from clipvil.engine.models import build_model, get_model
from clipvil.families.grounding.loss import grounding_loss, normalised_xyxy, pixel_xywh
from clipvil.families.grounding.model import (
    GridGrounding,
    GroundingConfig,
    GroundingOutput,
    box_cell,
    cell_centres,
)
from clipvil.types import GridFeatures

H, W, C, VOCAB = 3, 4, 12, 30


def _grid(b: int = 2, seed: int = 0) -> GridFeatures:
    g = torch.Generator().manual_seed(seed)
    feats = torch.randn(b, H * W, C, generator=g)
    mask = torch.ones(b, H, W, dtype=torch.bool)
    mask[1, 2:, :] = False  # item 1: content of 2 rows x 3 columns (zero-padded bottom and right)
    mask[1, :, 3:] = False
    return GridFeatures(feats, mask.flatten(1), (H, W))


def _tokens() -> torch.Tensor:
    return torch.tensor([[3, 4, 5, 0, 0], [7, 8, 9, 10, 11]])


def _model() -> GridGrounding:
    torch.manual_seed(0)
    return build_model("grid_grounding", "tiny", grid_dim=C, vocab_size=VOCAB).eval()  # type: ignore[return-value]


def test_registered_with_presets() -> None:
    entry = get_model("grid_grounding")
    assert entry.family == "grounding" and entry.config_cls is GroundingConfig
    assert GroundingConfig.preset("default") == GroundingConfig()
    assert GroundingConfig.preset("tiny").hidden == 32
    with pytest.raises(ValueError, match="unknown grounding preset"):
        GroundingConfig.preset("huge")
    with pytest.raises(ValueError, match="not divisible"):
        GroundingConfig(hidden=30, heads=4)


def test_shapes_and_masks() -> None:
    model, grid, tokens = _model(), _grid(), _tokens()
    with torch.no_grad():
        out = model(grid, tokens)
    assert isinstance(out, GroundingOutput)
    assert out.cell_logits.shape == (2, H * W) and out.boxes.shape == (2, 4)
    padded = ~grid.mask
    assert (out.cell_logits[padded] == torch.finfo(torch.float32).min).all()
    assert torch.isfinite(out.cell_logits[grid.mask]).all()
    assert (out.boxes >= 0).all() and (out.boxes <= 1).all()
    assert (out.boxes[:, 2:] >= out.boxes[:, :2]).all()
    # nothing in padded cells or after the last real token changes a real output
    feats = grid.feats.clone()
    feats[padded] = 1e6
    longer = torch.cat([tokens, torch.zeros(2, 3, dtype=tokens.dtype)], dim=1)
    with torch.no_grad():
        other = model(GridFeatures(feats, grid.mask, grid.hw), longer)
    torch.testing.assert_close(other.cell_logits, out.cell_logits)
    torch.testing.assert_close(other.boxes, out.boxes)


def test_content_relative_geometry() -> None:
    mask = _grid().mask
    centres, size = cell_centres(mask, (H, W))
    # item 0: 3 x 4 real cells; item 1: 2 rows x 3 columns of real cells span [0, 1]
    torch.testing.assert_close(size, torch.tensor([[1 / 4, 1 / 3], [1 / 3, 1 / 2]]))
    torch.testing.assert_close(centres[0, 1 * W + 2], torch.tensor([2.5 / 4, 1.5 / 3]))
    torch.testing.assert_close(centres[1, 1 * W + 2], torch.tensor([2.5 / 3, 1.5 / 2]))
    boxes = torch.tensor([[0.45, 0.6, 0.55, 0.9], [0.4, 0.5, 0.6, 1.0]])  # centres (0.5, 0.75) both
    # item 0: col floor(0.5 * 4) = 2, row floor(0.75 * 3) = 2; item 1: col floor(1.5) = 1, row floor(1.5) = 1
    assert box_cell(boxes, mask, (H, W)).tolist() == [2 * W + 2, 1 * W + 1]
    assert box_cell(torch.tensor([[0.9, 0.9, 1.0, 1.0]] * 2), mask, (H, W)).tolist() == [2 * W + 3, 1 * W + 2]


def test_loss_on_hand_values() -> None:
    out = GroundingOutput(
        cell_logits=torch.tensor([[0.0, math.log(3.0), 0.0, 0.0]]),  # softmax [1/6, 1/2, 1/6, 1/6]
        boxes=torch.tensor([[0.0, 0.0, 0.5, 0.5]]),
    )
    target = torch.tensor([[0.25, 0.25, 0.75, 0.75]])
    loss, logs = grounding_loss(out, target, torch.tensor([1]))
    # CE = -ln(1/2); L1 over (cx, cy, w, h): |0.25 - 0.5| * 2 = 0.5;
    # IoU = 0.0625 / 0.4375 = 1/7, enclosing area 0.5625, GIoU = 1/7 - (0.5625 - 0.4375) / 0.5625 = 1/7 - 2/9
    giou = 1 / 7 - 2 / 9
    assert logs["loss_cell"] == pytest.approx(math.log(2.0))
    assert logs["loss_l1"] == pytest.approx(0.5)
    assert logs["loss_giou"] == pytest.approx(1 - giou)
    assert logs["iou"] == pytest.approx(1 / 7)
    assert float(loss) == pytest.approx(math.log(2.0) + 5 * 0.5 + 2 * (1 - giou), rel=1e-6)
    with pytest.raises(ValueError, match="normalised xyxy"):
        grounding_loss(out, torch.tensor([[0.5, 0.5, 0.25, 0.75]]), torch.tensor([1]))


def test_box_conversions() -> None:
    hw = torch.tensor([[100, 200]])  # H, W
    xyxy = normalised_xyxy(torch.tensor([[20.0, 10.0, 100.0, 50.0]]), hw)
    torch.testing.assert_close(xyxy, torch.tensor([[0.1, 0.1, 0.6, 0.6]]))
    torch.testing.assert_close(pixel_xywh(xyxy, hw), torch.tensor([[20.0, 10.0, 100.0, 50.0]]))


def test_tiny_overfit_one_batch() -> None:
    torch.manual_seed(0)
    b = 8
    model = GridGrounding(GroundingConfig.preset("tiny"), grid_dim=C, vocab_size=VOCAB)
    grid = GridFeatures(torch.randn(b, H * W, C), torch.ones(b, H * W, dtype=torch.bool), (H, W))
    tokens = torch.randint(1, VOCAB, (b, 4))
    lo = torch.rand(b, 2) * 0.5
    target = torch.cat([lo, lo + 0.2 + torch.rand(b, 2) * 0.3], dim=1)
    cells = box_cell(target, grid.mask, grid.hw)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(30):
        loss, _ = grounding_loss(model(grid, tokens), target, cells)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.6 * losses[0], losses
