"""Visual grounding: box IoU and accuracy at IoU >= 0.5 (the RefCOCO / RefCOCO+ / RefCOCOg metric), in percent.

A predicted box is correct when its intersection over union with the gold box is at least the threshold
(0.5, inclusive, as MAttNet, TransVG and MDETR count it). Boxes are COCO [x, y, w, h] (left, top, width,
height, pixels) unless a function says xyxy ([x0, y0, x1, y1]); the IoU is continuous (no +1 pixel
convention). A box with no area has IoU 0 with everything, itself included.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence

import numpy as np

from clipvil.metrics._checks import check_ids

Box = Sequence[float]  # four numbers


def _as_boxes(boxes: Box | np.ndarray, what: str) -> np.ndarray:
    arr = np.asarray(boxes, dtype=np.float64)
    if arr.shape[-1:] != (4,):
        raise ValueError(f"{what}: boxes must have 4 numbers in the last dimension, got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError(f"{what}: boxes must be finite, got {arr.tolist()!r:.80}")
    return arr


def xywh_to_xyxy(boxes: Box | np.ndarray) -> np.ndarray:
    """[..., 4] COCO [x, y, w, h] → [x0, y0, x1, y1]."""
    b = _as_boxes(boxes, "xywh_to_xyxy")
    return np.concatenate([b[..., :2], b[..., :2] + b[..., 2:]], axis=-1)


def xyxy_to_xywh(boxes: Box | np.ndarray) -> np.ndarray:
    """[..., 4] [x0, y0, x1, y1] → COCO [x, y, w, h]."""
    b = _as_boxes(boxes, "xyxy_to_xywh")
    return np.concatenate([b[..., :2], b[..., 2:] - b[..., :2]], axis=-1)


def box_iou_xyxy(a: Box | np.ndarray, b: Box | np.ndarray) -> np.ndarray | float:
    """IoU of xyxy boxes, elementwise over broadcast [..., 4] inputs; a float for two single boxes.

    A box with x1 < x0 or y1 < y0 is refused (ValueError); one with zero area has IoU 0."""
    a, b = _as_boxes(a, "box_iou"), _as_boxes(b, "box_iou")
    for name, box in (("first", a), ("second", b)):
        if (box[..., 2:] < box[..., :2]).any():
            raise ValueError(f"box_iou: {name} boxes have x1 < x0 or y1 < y0 (not xyxy?): {box.tolist()!r:.80}")
    wh = np.clip(np.minimum(a[..., 2:], b[..., 2:]) - np.maximum(a[..., :2], b[..., :2]), 0.0, None)
    inter = wh[..., 0] * wh[..., 1]
    area_a = (a[..., 2] - a[..., 0]) * (a[..., 3] - a[..., 1])
    area_b = (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])
    union = area_a + area_b - inter
    iou = np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)
    return float(iou) if iou.ndim == 0 else iou


def box_iou_xywh(a: Box | np.ndarray, b: Box | np.ndarray) -> np.ndarray | float:
    """IoU of COCO [x, y, w, h] boxes (see box_iou_xyxy); negative sizes are refused."""
    return box_iou_xyxy(xywh_to_xyxy(a), xywh_to_xyxy(b))


def grounding_accuracy(
    predictions: Mapping[Hashable, Box],
    references: Mapping[Hashable, Box],
    splits: Mapping[Hashable, str] | None = None,
    threshold: float = 0.5,
) -> dict[str, object]:
    """{"accuracy", "n", "mean_iou", ["per_split": {split: accuracy}, "n_per_split": {split: n}]}.

    predictions / references: {expression id: [x, y, w, h]}, one per referring expression (an expression id
    is whatever the caller keys by, e.g. (ref_id, sentence index)); every reference needs a prediction and
    no prediction may be for an unknown id. splits: {expression id: split name} for per-split accuracies.
    Accuracies are percentages of expressions whose IoU >= threshold.
    """
    check_ids("grounding_accuracy", predictions, references, allow_extra=False, item="expression")
    if not references:
        raise ValueError("grounding_accuracy: no expressions to score")
    if not 0.0 < threshold <= 1.0:
        raise ValueError(f"grounding_accuracy: threshold must be in (0, 1], got {threshold}")
    keys = list(references)
    ious = np.asarray(box_iou_xywh([predictions[k] for k in keys], [references[k] for k in keys]))
    hits = ious >= threshold
    out: dict[str, object] = {
        "accuracy": 100.0 * float(hits.mean()),
        "n": len(keys),
        "mean_iou": float(ious.mean()),
    }
    if splits is not None:
        missing = [k for k in keys if k not in splits]
        if missing:
            raise ValueError(f"grounding_accuracy: no split for expression(s) {sorted(missing, key=repr)[:5]}")
        per: dict[str, list[bool]] = {}
        for k, hit in zip(keys, hits.tolist(), strict=True):
            per.setdefault(splits[k], []).append(hit)
        out["per_split"] = {s: 100.0 * sum(v) / len(v) for s, v in per.items()}
        out["n_per_split"] = {s: len(v) for s, v in per.items()}
    return out
