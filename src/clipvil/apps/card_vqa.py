"""The card describer of VQA recipes (configs/vqa/): the head over cached grids, one training phase.

The grid comes from the encoder registry (channels of `task.feature_encoder`, cells of `task.feature_preset`
at its stride), the answers from `task.answer_vocab` (its size) and the question words from a stated
assumption. Only what the recipe trains is counted: the VQA recipes read cached features, so the visual tower
is frozen, outside the model, and left out.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from clipvil.apps.card_parts import (
    CardOptions,
    CardParts,
    CardPhase,
    embedding_params,
    grid_shape,
    materialise,
    register_card,
)
from clipvil.engine.config import RunConfig
from clipvil.engine.models import build_model
from clipvil.families.vqa.losses import get_loss
from clipvil.types import GridFeatures

# VQA v2 (Goyal et al., CVPR 2017; visualqa.org/download.html): data_subtype -> (questions, images)
VQA_SIZES: dict[str, tuple[int, int]] = {
    "train2014": (443_757, 82_783),
    "val2014": (214_354, 40_504),
    "test-dev2015": (107_394, 36_807),
    "test2015": (447_793, 81_434),
}
VQA_SIZES_SOURCE = "VQA v2 (Goyal et al., CVPR 2017), visualqa.org/download.html"


def vqa_grid(cfg: RunConfig, notes: list[str]) -> tuple[tuple[int, int], int]:
    """((h, w), channels) of the recipe's cached grids (several stores: channels concatenated)."""
    t = cfg.task
    if not t.feature_encoder:
        raise ValueError("card: the recipe sets no task.feature_encoder; pass one, e.g. task.feature_encoder=RN50")
    preset = t.feature_preset or "vqa"
    if not t.feature_preset:
        notes.append("no task.feature_preset: the 'vqa' preset (600x1000) assumed")
    stores = len(t.features)  # a plugin of several stores repeats the one encoder named
    hw, dim, how = grid_shape(t.feature_encoder, preset)
    notes.append(f"grid {hw[0]}x{hw[1]}x{dim * stores} from {how}" + (f", {stores} stores" if stores > 1 else ""))
    return hw, dim * stores


def answer_count(answer_vocab: Path | None, opts: CardOptions, notes: list[str]) -> int:
    """The size of the recipe's released answer vocabulary, or the assumed count."""
    path = Path(answer_vocab) / "trainval_label2ans.json" if answer_vocab is not None else None
    if path is not None and path.is_file():
        n = len(json.loads(path.read_text()))
        notes.append(f"{n} answers: the size of {path}")
        return n
    notes.append(f"{opts.answers} answers assumed (the answer vocabulary is built from the data, or its file is "
                 "not here)")
    return opts.answers


def _loss_fn(model: torch.nn.Module, facts: dict[str, Any], vocab: int):
    loss = get_loss(facts["loss"])
    h, w = facts["grid_hw"]

    def run(batch: int) -> torch.Tensor:
        grid = GridFeatures(torch.randn(batch, h * w, facts["grid_dim"]), torch.ones(batch, h * w, dtype=torch.bool),
                            (h, w))  # [B, N, C]
        tokens = torch.randint(1, vocab, (batch, facts["tokens"]))  # [B, T]
        target = (torch.rand(batch, facts["n_answers"]) < 3 / facts["n_answers"]).float()  # [B, A] soft scores
        return loss(model, grid, tokens, target)

    return run


def vqa_datasets(cfg: RunConfig) -> tuple[dict[str, Any], int | None]:
    """({split name: {subtype, questions, images}}, questions of the training split or None)."""
    t = cfg.task
    out: dict[str, Any] = {"source": VQA_SIZES_SOURCE}
    train_n: int | None = 0
    for part in cfg.train.train_split.split("+"):
        sub = t.splits.get(part)
        if sub in VQA_SIZES:
            out[part] = {"questions": VQA_SIZES[sub][0], "images": VQA_SIZES[sub][1], "subtype": sub}
            train_n = None if train_n is None else train_n + VQA_SIZES[sub][0]
        else:
            files = t.split_files.get(part, [sub])
            out[part] = {"files": ", ".join(str(f) for f in files), "note": "size not known to the card"}
            train_n = None
    for name, sub in t.splits.items():
        if name not in out and sub in VQA_SIZES:
            out[name] = {"questions": VQA_SIZES[sub][0], "images": VQA_SIZES[sub][1], "subtype": sub}
    return out, train_n


def describe_vqa(cfg: RunConfig, opts: CardOptions) -> CardParts:
    t = cfg.task
    notes: list[str] = []
    hw, grid_dim = vqa_grid(cfg, notes)
    n_answers = answer_count(t.answer_vocab, opts, notes)
    notes.append(f"question vocabulary of {opts.question_vocab:,} words assumed (built from the data at "
                 "training time; only the word-embedding size depends on it)")
    with torch.device("meta"):  # no initialisation work: the values do not matter for the costs
        model = build_model(t.model, t.preset, t.model_overrides, grid_dim=grid_dim,
                            vocab_size=opts.question_vocab, n_answers=n_answers)
    model = materialise(model)
    facts = {"model": f"{t.model}/{t.preset}", "encoder": t.feature_encoder, "grid_hw": hw, "grid_dim": grid_dim,
             "n_answers": n_answers, "question_vocab": opts.question_vocab, "tokens": t.question_max_tokens,
             "loss": t.loss}
    datasets, train_n = vqa_datasets(cfg)
    key = [facts["model"], t.model_overrides, hw, grid_dim, n_answers, opts.question_vocab, t.question_max_tokens,
           t.loss]
    phase = CardPhase("train", _loss_fn(model, facts, opts.question_vocab), 1.0,
                      f"one question over a {hw[0]}x{hw[1]}x{grid_dim} grid, {t.question_max_tokens} tokens")
    return CardParts(
        model=model, phases=[phase], facts=facts, datasets=datasets, train_samples=train_n,
        input_bytes=hw[0] * hw[1] * grid_dim * 2, measure_key=key,
        notes=["visual tower frozen, features cached (fp16 stores): only the head is counted", *notes],
        embedding_params=embedding_params(model, opts.question_vocab),
    )


register_card("vqa", describe_vqa)

__all__ = ["VQA_SIZES", "VQA_SIZES_SOURCE", "answer_count", "describe_vqa", "vqa_datasets", "vqa_grid"]
