"""VQA losses by name: how a head's logits meet the soft-score targets.

    bce         BCE with logits on soft scores, mean over answers × n_answers = the per-question sum of the
                answers' BCE terms averaged over the batch (mcan-vqa, MMF's `logit_bce`)
    triple_bce  MMF's `triple_logit_bce` for MoVie+MCAN's three classifier outputs
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from clipvil.types import GridFeatures

VqaLoss = Callable[[nn.Module, GridFeatures, torch.Tensor, torch.Tensor], torch.Tensor]


def _bce(model: nn.Module, grid: GridFeatures, tokens: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    logits = model(grid, tokens)  # [B, A]
    return F.binary_cross_entropy_with_logits(logits.float(), target, reduction="mean") * target.shape[1]


def _triple_bce(model: nn.Module, grid: GridFeatures, tokens: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    from clipvil.nn.losses import triple_logit_bce

    return triple_logit_bce(model(grid, tokens, all_heads=True).float(), target)  # from [B, 3, A]


_LOSSES: dict[str, VqaLoss] = {"bce": _bce, "triple_bce": _triple_bce}


def get_loss(name: str) -> VqaLoss:
    """The VQA loss registered as `name` (ValueError naming the known ones otherwise)."""
    if name not in _LOSSES:
        raise ValueError(f"task.loss: unknown VQA loss {name!r}; known: {', '.join(sorted(_LOSSES))}")
    return _LOSSES[name]
