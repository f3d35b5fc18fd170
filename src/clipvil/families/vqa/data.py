"""The VQA task's dataset items, question batches and word-vector initialisation."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset

from clipvil.data.answers import AnswerVocab, vqa_soft_targets
from clipvil.data.question_vocab import QuestionVocab
from clipvil.data.vqa import VqaSplit

log = logging.getLogger(__name__)


class VqaDataset(Dataset):
    """One item per question: its image's store key, token ids and soft target."""

    def __init__(self, split: VqaSplit, keys: list[str], questions: QuestionVocab, answers: AnswerVocab) -> None:
        self.split, self.keys = split, keys
        self.tokens = [questions.encode(ex.question) for ex in split.examples]
        self.targets = vqa_soft_targets(split.examples, answers)[0] if split.has_answers else None

    def __len__(self) -> int:
        return len(self.split.examples)

    def __getitem__(self, i: int) -> dict[str, Any]:
        ex = self.split.examples[i]
        target = self.targets[i] if self.targets is not None else None
        return {"question_id": ex.question_id, "key": self.keys[i], "tokens": self.tokens[i], "target": target}


def word_embedding(model: nn.Module) -> nn.Embedding:
    """The question word table of a VQA head (heads expose it as `word_embedding`)."""
    table = getattr(model, "word_embedding", None)
    if not isinstance(table, nn.Embedding):
        raise TypeError(f"{type(model).__name__} exposes no `word_embedding` table for task.word_vectors")
    return table


def apply_word_vectors(model: nn.Module, vocab: QuestionVocab, path: Path, vocab_path: Path | None) -> None:
    """Fills the head's word-embedding rows with the vectors of `path` (GloVe .txt, or .npy + vocabulary),
    in vocabulary order; words without a vector keep their random initialisation. Logs the coverage."""
    from clipvil.data.word_vectors import word_vector_matrix

    table = word_embedding(model)
    matrix, found, coverage = word_vector_matrix(list(vocab.words), path, words_path=vocab_path,
                                                 dim=table.embedding_dim)
    with torch.no_grad():
        rows = torch.from_numpy(found).nonzero().squeeze(1)  # [K]
        table.weight[rows] = torch.from_numpy(matrix[found]).to(table.weight.dtype)  # [K, E]
    log.info("word vectors %s: %s", path, coverage)
