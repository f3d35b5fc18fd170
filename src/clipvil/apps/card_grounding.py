"""The card describer of grounding recipes (configs/grounding/): the grid grounding head over cached grids.

A training sample is one referring expression (a (ref, sentence) pair) over its image's grid: the expression
clipped to `max_tokens` words, the grid of the recipe's preset (the "pretrain" preset pads to 384x640 or
640x384: 12x20 or 20x12 cells at stride 32, the same count; the landscape one is used), loss = cell
cross-entropy + L1 + GIoU as the task weighs them. The visual tower is frozen (cached features): only the head
is counted. The word vocabulary is built from the training expressions: its size is an assumption.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from clipvil.apps.card_parts import (
    CardOptions,
    CardParts,
    CardPhase,
    embedding_params,
    grid_shape,
    materialise,
    register_card,
)
from clipvil.apps.card_sizes import REFER_EXPRESSIONS, REFER_SOURCE
from clipvil.engine.config import RunConfig
from clipvil.engine.models import build_model
from clipvil.families.grounding.loss import GroundingLossWeights, grounding_loss
from clipvil.families.grounding.model import box_cell
from clipvil.types import GridFeatures


def _loss_fn(model: nn.Module, hw: tuple[int, int], dim: int, vocab: int, tokens: int,
             weights: GroundingLossWeights):
    def run(batch: int) -> torch.Tensor:
        n = hw[0] * hw[1]
        grid = GridFeatures(torch.randn(batch, n, dim), torch.ones(batch, n, dtype=torch.bool), hw)  # [B, N, C]
        words = torch.randint(1, vocab, (batch, tokens))  # [B, T]
        corner = torch.rand(batch, 2) * 0.5  # [B, 2]
        target = torch.cat([corner, corner + 0.1 + torch.rand(batch, 2) * 0.4], dim=1)  # [B, 4] xyxy in [0, 1]
        out = model(grid, words)
        loss, _ = grounding_loss(out, target, box_cell(target, grid.mask, grid.hw), weights)
        return loss

    return run


def _datasets(cfg: RunConfig) -> tuple[dict[str, Any], int | None]:
    t = cfg.task
    sizes = REFER_EXPRESSIONS.get(t.dataset)
    split_by = t.split_by or {"refcocog": "umd", "refcoco": "unc", "refcoco+": "unc"}.get(t.dataset, "")
    if sizes is None or (t.dataset == "refcocog" and split_by != "umd") or (t.dataset != "refcocog" and
                                                                            split_by not in ("", "unc")):
        return {"source": REFER_SOURCE, cfg.train.train_split: {"note": f"{t.dataset} ({split_by or 'default'} "
                                                                        "split): size not known to the card"}}, None
    out: dict[str, Any] = {"source": REFER_SOURCE}
    for name, n in sizes.items():
        out[name] = {"expressions": n, "dataset": f"{t.dataset} ({split_by})"}
    parts = cfg.train.train_split.split("+")
    train_n = sum(sizes[p] for p in parts) if all(p in sizes for p in parts) else None
    return out, train_n


def describe_grounding(cfg: RunConfig, opts: CardOptions) -> CardParts:
    t = cfg.task
    if not t.feature_encoder:
        raise ValueError("card: the recipe sets no task.feature_encoder; pass one, e.g. task.feature_encoder=RN50")
    notes = ["visual tower frozen, features cached (fp16 stores): only the grounding head is counted"]
    preset = t.feature_preset or "pretrain"
    hw, dim, how = grid_shape(t.feature_encoder, preset)
    notes.append(f"grid {hw[0]}x{hw[1]}x{dim} from {how}" + (" (portrait images: the transposed grid, as many "
                                                            "cells)" if preset == "pretrain" else ""))
    vocab = opts.question_vocab
    notes.append(f"expression vocabulary of {vocab:,} words assumed (built from the training expressions; only the "
                 "word-embedding size depends on it); every expression at the recipe's clip of "
                 f"{t.max_tokens} words (an upper bound: RefCOCO's average 3.5, RefCOCOg's 8.4 words, TFDS)")
    with torch.device("meta"):
        model = build_model(t.model, t.preset, t.model_overrides, grid_dim=dim, vocab_size=vocab)
    model = materialise(model)
    weights = GroundingLossWeights(t.loss_cell, t.loss_l1, t.loss_giou)
    phase = CardPhase("train", _loss_fn(model, hw, dim, vocab, t.max_tokens, weights), 1.0,
                      f"one expression of {t.max_tokens} tokens over a {hw[0]}x{hw[1]}x{dim} grid")
    datasets, train_n = _datasets(cfg)
    facts = {"model": f"{t.model}/{t.preset}", "encoder": t.feature_encoder, "dataset": t.dataset, "grid_hw": hw,
             "grid_dim": dim, "vocab": vocab, "tokens": t.max_tokens}
    key = [facts["model"], t.model_overrides, hw, dim, vocab, t.max_tokens]
    return CardParts(model=model, phases=[phase], facts=facts, datasets=datasets, train_samples=train_n,
                     input_bytes=hw[0] * hw[1] * dim * 2, notes=notes, embedding_params=embedding_params(model, vocab),
                     measure_key=key)


register_card("grounding", describe_grounding)

__all__ = ["describe_grounding"]
