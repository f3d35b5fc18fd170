"""Answering one question about one image from a checkpoint alone: no datasets, no feature store.

The checkpoint's artifacts hold the answer and question vocabularies and the provenance of the features
the head was trained on; `clipvil.apps.predict` turns the image into a grid with the same encoder/preset.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from clipvil.data.answers import AnswerVocab
from clipvil.data.question_vocab import QuestionVocab, question_tokens, tokenize_question
from clipvil.engine.models import build_model
from clipvil.types import GridFeatures


class QuestionError(ValueError):
    """A question the model cannot read (empty, or no word it knows)."""


@dataclass
class VqaAnswer:
    """The top answers to one question, and what was noticed on the way."""

    answers: list[tuple[str, float]]  # (answer, probability), best first
    notes: list[str] = field(default_factory=list)  # e.g. "question cut to 14 words"


@dataclass
class VqaPredictor:
    """A VQA head with its vocabularies, ready for single questions."""

    model: nn.Module
    answers: AnswerVocab
    questions: QuestionVocab
    features: dict[str, Any]  # provenance of the grids the head was trained on (encoder, preset, weights)
    device: torch.device

    @classmethod
    def from_artifacts(cls, cfg: Any, artifacts: dict[str, Any], device: torch.device) -> VqaPredictor:
        """The head of a VQA checkpoint (weights still to be loaded into `.model`)."""
        for key in ("answers", "question_vocab", "features"):
            if key not in artifacts:
                raise KeyError(f"the checkpoint carries no {key!r} artifact (written by an older clipvil?)")
        answers = AnswerVocab.from_answers(artifacts["answers"])
        qv = artifacts["question_vocab"]
        questions = QuestionVocab(tuple(qv["words"]), int(qv["max_tokens"]))
        features = artifacts["features"]
        model = build_model(cfg.model, cfg.preset, cfg.model_overrides, grid_dim=int(features["dim"]),
                            vocab_size=len(questions), n_answers=len(answers))
        return cls(model.to(device).eval(), answers, questions, features, device)

    def encode(self, question: str) -> tuple[list[int], list[str]]:
        """Token ids of a question and notes; QuestionError when no word of it is known."""
        words = tokenize_question(question)
        if not words:
            raise QuestionError(f"the question {question!r} has no words")
        ids = self.questions.encode(question)
        if all(i == 1 for i in ids):  # 1 = <unk>
            raise QuestionError(f"no word of the question {question!r} is in the model's vocabulary")
        notes = []
        if len(words) > self.questions.max_tokens:
            notes.append(f"question cut to its first {self.questions.max_tokens} words (of {len(words)})")
        unknown = [w for w in words[: self.questions.max_tokens] if w not in self.questions.word2id]
        if unknown:
            notes.append(f"unknown words: {', '.join(unknown)}")
        return ids, notes

    @torch.inference_mode()
    def answer(self, grid: GridFeatures, question: str, k: int = 5) -> VqaAnswer:
        """The top-k answers for one image grid [1, N, C] and one question."""
        if k < 1:
            raise ValueError(f"--top-k must be >= 1, got {k}")
        ids, notes = self.encode(question)
        tokens = question_tokens([ids]).to(self.device)  # [1, T]
        probs = torch.sigmoid(self.model(grid.to(self.device), tokens).float())[0]  # [A]
        top = probs.topk(min(k, probs.numel()))
        pairs = [(self.answers.label2ans[j], float(p)) for p, j in zip(top.values.tolist(), top.indices.tolist())]
        return VqaAnswer(pairs, notes)
