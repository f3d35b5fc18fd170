"""Box IoU and grounding accuracy on hand-made boxes, values computed by hand (and torchvision's IoU)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torchvision.ops import box_iou

from clipvil.metrics.grounding import (
    box_iou_xywh,
    box_iou_xyxy,
    grounding_accuracy,
    xywh_to_xyxy,
    xyxy_to_xywh,
)


def test_iou_by_hand() -> None:
    assert box_iou_xywh([0, 0, 10, 10], [5, 5, 10, 10]) == pytest.approx(25 / 175)
    assert box_iou_xywh([0, 0, 2, 2], [1, 0, 2, 2]) == pytest.approx(2 / 6)
    assert box_iou_xywh([0, 0, 2, 1], [0, 0, 1, 1]) == 0.5
    assert box_iou_xywh([0, 0, 1, 1], [3, 3, 1, 1]) == 0.0
    assert box_iou_xywh([0, 0, 1, 1], [1, 0, 1, 1]) == 0.0  # touching edges
    assert box_iou_xywh([2, 2, 0, 5], [2, 2, 0, 5]) == 0.0  # no area, no IoU
    assert box_iou_xyxy([0, 0, 4, 4], [1, 1, 3, 3]) == pytest.approx(4 / 16)
    np.testing.assert_allclose(box_iou_xywh([[0, 0, 2, 2], [0, 0, 1, 1]], [1, 0, 2, 2]), [1 / 3, 0.0])
    with pytest.raises(ValueError, match="x1 < x0"):
        box_iou_xyxy([5, 5, 1, 1], [0, 0, 1, 1])
    with pytest.raises(ValueError, match="4 numbers"):
        box_iou_xywh([0, 0, 1], [0, 0, 1, 1])


def test_iou_agrees_with_torchvision() -> None:
    rng = np.random.default_rng(0)
    a = np.concatenate([rng.uniform(0, 50, (20, 2)), rng.uniform(1, 40, (20, 2))], axis=1)
    b = np.concatenate([rng.uniform(0, 50, (20, 2)), rng.uniform(1, 40, (20, 2))], axis=1)
    ours = box_iou_xywh(a[:, None, :], b[None, :, :])
    ref = box_iou(torch.tensor(xywh_to_xyxy(a)), torch.tensor(xywh_to_xyxy(b))).numpy()
    np.testing.assert_allclose(ours, ref, rtol=1e-9, atol=1e-12)


def test_box_conversions() -> None:
    np.testing.assert_array_equal(xywh_to_xyxy([1, 2, 3, 4]), [1, 2, 4, 6])
    np.testing.assert_array_equal(xyxy_to_xywh([[1, 2, 4, 6]]), [[1, 2, 3, 4]])


def test_accuracy_per_split() -> None:
    refs = {("r1", 0): [0, 0, 2, 1], ("r1", 1): [0, 0, 2, 1], ("r2", 0): [0, 0, 10, 10], ("r3", 0): [0, 0, 2, 2]}
    preds = {
        ("r1", 0): [0, 0, 1, 1],  # IoU 0.5 exactly: a hit
        ("r1", 1): [0, 0, 2, 1],  # 1.0
        ("r2", 0): [5, 5, 10, 10],  # 1/7
        ("r3", 0): [1, 0, 2, 2],  # 1/3
    }
    splits = {("r1", 0): "testA", ("r1", 1): "testA", ("r2", 0): "testB", ("r3", 0): "testB"}
    out = grounding_accuracy(preds, refs, splits)
    assert out["accuracy"] == 50.0 and out["n"] == 4
    assert out["mean_iou"] == pytest.approx((0.5 + 1.0 + 1 / 7 + 1 / 3) / 4)
    assert out["per_split"] == {"testA": 100.0, "testB": 0.0}
    assert out["n_per_split"] == {"testA": 2, "testB": 2}
    assert grounding_accuracy(preds, refs, threshold=0.3)["accuracy"] == 75.0
    with pytest.raises(ValueError, match="no prediction for 1 expression"):
        grounding_accuracy({k: v for k, v in preds.items() if k != ("r2", 0)}, refs)
    with pytest.raises(ValueError, match="no split for expression"):
        grounding_accuracy(preds, refs, {("r1", 0): "testA"})
