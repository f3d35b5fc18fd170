"""The loss of the grid grounding head (`clipvil.families.grounding.model`), and the box conversions its task needs.

    loss = λ_cell · CE(cell_logits, cell holding the gold box's centre)
         + λ_L1   · L1(predicted (cx, cy, w, h), gold (cx, cy, w, h))        boxes normalised to [0, 1]
         + λ_GIoU · (1 - GIoU(predicted xyxy, gold xyxy))

The box terms are DETR's as TransVG and MDETR use them: L1 summed over the four coordinates, each term
averaged over the batch, λ_L1 = 5, λ_GIoU = 2 (GIoU from torchvision). λ_cell = 1: the cell term is the
classification of a one-stage detector over grid cells, the gold cell chosen by `box_cell` (the real cell
that contains the box centre, on the content-relative grid of the head). Everything is computed in float32.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torchvision.ops import generalized_box_iou_loss

from clipvil.families.grounding.model import GroundingOutput, box_cell

__all__ = ["GroundingLossWeights", "box_cell", "grounding_loss", "normalised_xyxy", "pixel_xywh"]


@dataclass(frozen=True)
class GroundingLossWeights:
    """Weights of the three terms."""

    cell: float = 1.0  # cross-entropy over cells
    l1: float = 5.0  # L1 on normalised (cx, cy, w, h) (DETR / TransVG)
    giou: float = 2.0  # 1 - GIoU on xyxy (DETR / TransVG)


def _cxcywh(xyxy: torch.Tensor) -> torch.Tensor:
    return torch.cat([(xyxy[:, :2] + xyxy[:, 2:]) / 2, xyxy[:, 2:] - xyxy[:, :2]], dim=1)  # [B, 4]


def grounding_loss(
    out: GroundingOutput,
    target_xyxy: torch.Tensor,
    target_cells: torch.Tensor,
    weights: GroundingLossWeights = GroundingLossWeights(),
) -> tuple[torch.Tensor, dict[str, float]]:
    """(scalar loss, logs {loss_cell, loss_l1, loss_giou, iou}) for normalised xyxy targets [B, 4] and
    target cells [B] (from `box_cell(target_xyxy, grid.mask, grid.hw)`)."""
    b = out.boxes.shape[0]
    if target_xyxy.shape != (b, 4) or target_cells.shape != (b,):
        raise ValueError(
            f"grounding_loss: targets must be boxes [{b}, 4] and cells [{b}], "
            f"got {tuple(target_xyxy.shape)} and {tuple(target_cells.shape)}"
        )
    pred, gold = out.boxes.float(), target_xyxy.float()
    if (gold[:, 2:] < gold[:, :2]).any() or gold.min() < 0 or gold.max() > 1:
        raise ValueError("grounding_loss: target boxes must be normalised xyxy in [0, 1] with x1 >= x0, y1 >= y0")
    loss_cell = F.cross_entropy(out.cell_logits.float(), target_cells)
    loss_l1 = (_cxcywh(pred) - _cxcywh(gold)).abs().sum(dim=1).mean()
    giou = generalized_box_iou_loss(pred, gold, reduction="none")  # [B] = 1 - GIoU
    loss_giou = giou.mean()
    loss = weights.cell * loss_cell + weights.l1 * loss_l1 + weights.giou * loss_giou
    with torch.no_grad():
        wh = (torch.minimum(pred[:, 2:], gold[:, 2:]) - torch.maximum(pred[:, :2], gold[:, :2])).clamp(min=0)
        inter = wh[:, 0] * wh[:, 1]
        union = (pred[:, 2:] - pred[:, :2]).prod(1) + (gold[:, 2:] - gold[:, :2]).prod(1) - inter
        iou = (inter / union.clamp(min=1e-12)).mean()
    logs = {"loss_cell": float(loss_cell.detach()), "loss_l1": float(loss_l1.detach()),
            "loss_giou": float(loss_giou.detach()), "iou": float(iou)}
    return loss, logs


def normalised_xyxy(box_xywh: torch.Tensor, image_hw: torch.Tensor) -> torch.Tensor:
    """[B, 4] pixel COCO boxes → normalised xyxy by each image's (H, W) [B, 2], clamped to [0, 1]."""
    h, w = image_hw[:, :1].to(box_xywh.dtype), image_hw[:, 1:].to(box_xywh.dtype)  # [B, 1]
    x0, y0 = box_xywh[:, :1] / w, box_xywh[:, 1:2] / h
    x1, y1 = (box_xywh[:, :1] + box_xywh[:, 2:3]) / w, (box_xywh[:, 1:2] + box_xywh[:, 3:]) / h
    return torch.cat([x0, y0, x1, y1], dim=1).clamp(0.0, 1.0)  # [B, 4]


def pixel_xywh(boxes_xyxy: torch.Tensor, image_hw: torch.Tensor) -> torch.Tensor:
    """[B, 4] normalised xyxy predictions → pixel COCO [x, y, w, h] of images of (H, W) [B, 2]."""
    scale = torch.stack([image_hw[:, 1], image_hw[:, 0]], dim=1).to(boxes_xyxy.dtype).repeat(1, 2)  # [B, 4]
    px = boxes_xyxy * scale  # [B, 4]
    return torch.cat([px[:, :2], px[:, 2:] - px[:, :2]], dim=1)  # [B, 4]
