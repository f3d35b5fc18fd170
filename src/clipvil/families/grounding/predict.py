"""Locating one referring expression in one image from a grounding checkpoint alone: no dataset, no store.

The checkpoint's artifacts hold the word vocabulary and the provenance of the training grids (encoder, preset,
stride, weights); `clipvil.apps.ground` makes the image's grid with the same encoder and preset, and the box
comes back to the image's pixels through the same frame the task trained with.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from clipvil.data.question_vocab import QuestionVocab, question_tokens, tokenize_question
from clipvil.engine.models import build_model
from clipvil.families.grounding.frame import frame_of
from clipvil.types import GridFeatures


class ExpressionError(ValueError):
    """An expression the model cannot read (empty, or no word it knows)."""


@dataclass
class GroundingResult:
    """The predicted box of one expression, and what was noticed on the way."""

    box_xywh: tuple[float, float, float, float]  # COCO [x, y, w, h] in the image's pixels
    cell_prob: float  # softmax probability of the most likely cell
    notes: list[str] = field(default_factory=list)  # e.g. "unknown words: ..."


@dataclass
class GroundingPredictor:
    """A grounding head with its vocabulary, ready for single expressions."""

    model: nn.Module
    words: QuestionVocab
    features: dict[str, Any]  # provenance of the training grids
    device: torch.device

    @classmethod
    def from_artifacts(cls, cfg: Any, artifacts: dict[str, Any], device: torch.device) -> GroundingPredictor:
        """The head of a grounding checkpoint (weights still to be loaded into `.model`)."""
        for key in ("grounding_vocab", "features"):
            if key not in artifacts:
                raise KeyError(f"the checkpoint carries no {key!r} artifact (written by an older clipvil?)")
        vocab = artifacts["grounding_vocab"]
        words = QuestionVocab(tuple(vocab["words"]), int(vocab["max_tokens"]))
        features = artifacts["features"]
        model = build_model(cfg.model, cfg.preset, cfg.model_overrides, grid_dim=int(features["dim"]),
                            vocab_size=len(words))
        return cls(model.to(device).eval(), words, features, device)

    def encode(self, expression: str) -> tuple[list[int], list[str]]:
        """Token ids and notes; ExpressionError when no word of it is known."""
        tokens = tokenize_question(expression)
        if not tokens:
            raise ExpressionError(f"the expression {expression!r} has no words")
        ids = self.words.encode(expression)
        if all(i == 1 for i in ids):  # 1 = <unk>
            raise ExpressionError(f"no word of the expression {expression!r} is in the model's vocabulary")
        notes = []
        if len(tokens) > self.words.max_tokens:
            notes.append(f"expression cut to its first {self.words.max_tokens} words (of {len(tokens)})")
        unknown = [w for w in tokens[: self.words.max_tokens] if w not in self.words.word2id]
        if unknown:
            notes.append(f"unknown words: {', '.join(unknown)}")
        return ids, notes

    @torch.inference_mode()
    def locate(self, grid: GridFeatures, expression: str, image_hw: tuple[int, int]) -> GroundingResult:
        """The box of `expression` in an image of (H, W) pixels whose grid [1, N, C] is `grid`."""
        ids, notes = self.encode(expression)
        tokens = question_tokens([ids]).to(self.device)  # [1, T]
        grid = grid.to(self.device)
        out = self.model(grid, tokens)
        prob = float(torch.softmax(out.cell_logits.float(), dim=1).max())
        box = frame_of(self.features, image_hw, grid).to_pixels(out.boxes[0].float().tolist())
        return GroundingResult(box, prob, notes)
