"""Answer losses of the VQA-style tasks, over soft target scores in [0, 1].

Both follow MMF (mmf/modules/losses.py: `logit_bce`, `triple_logit_bce`): the binary cross-entropy of
every (question, answer) pair, averaged over the batch *and* the answers, then multiplied by the number
of answers A — i.e. the per-question sum over answers, averaged over the batch. The logits are cast to
float32 first (mixed-precision logits lose the small BCE terms of the thousands of negative answers).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def vqa_bce(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """A · mean_{b,a} BCE(σ(x_ba), t_ba), with BCE(p, t) = -(t·log p + (1 - t)·log(1 - p)).

    logits, target: [B, A] (target: VQA soft scores). Returns a scalar."""
    if logits.dim() != 2 or logits.shape != target.shape:
        raise ValueError(
            f"vqa_bce: logits and target must both be [B, A], "
            f"got {tuple(logits.shape)} and {tuple(target.shape)}"
        )
    return (
        F.binary_cross_entropy_with_logits(logits.float(), target.float(), reduction="mean") * target.shape[1]
    )


def triple_logit_bce(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Σ_{k=0..2} A · mean_{b,a} BCE(σ(x_bka), t_ba): `vqa_bce` of each of the three heads, summed.

    logits: [B, 3, A] (MoVie+MCAN's three branches, `forward(..., all_heads=True)`), target: [B, A].
    Like MMF, a [B, A] input (the fused head alone, at evaluation) gives plain `vqa_bce`. Returns a scalar."""
    if logits.dim() == 2:
        return vqa_bce(logits, target)
    if logits.dim() != 3 or logits.shape[1] != 3 or logits.shape[::2] != target.shape:
        raise ValueError(
            f"triple_logit_bce: logits must be [B, 3, A] (or [B, A]) with target [B, A], "
            f"got {tuple(logits.shape)} and {tuple(target.shape)}"
        )
    return vqa_bce(logits[:, 0], target) + vqa_bce(logits[:, 1], target) + vqa_bce(logits[:, 2], target)
