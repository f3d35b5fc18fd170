"""Tiny VQA heads and random inputs for the model tests (imported by name: pytest puts this folder
on sys.path)."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from clipvil.families.vqa import MCAN, MCANConfig, Pythia, PythiaConfig
from clipvil.types import GridFeatures

VOCAB = 50
ANSWERS = 20

TINY_MCAN = MCANConfig(hidden=32, ff=64, heads=4, layers=2, word_dim=16, flat_mlp=24, flat_out=40)
TINY_PYTHIA = PythiaConfig(
    word_dim=16,
    question_hidden=32,
    question_att_hidden=24,
    hidden=48,
    classifier_text_hidden=12,
    classifier_image_hidden=40,
)
TINY_BUTD = PythiaConfig(
    word_dim=16,
    rnn="gru",
    question_hidden=32,
    question_att_hidden=24,
    question_glimpses=1,
    hidden=48,
    nonlinearity="gated_tanh",
    classifier_text_hidden=12,
    classifier_image_hidden=40,
    dropout=0.2,
)

HeadFactory = Callable[[int], nn.Module]

FACTORIES: dict[str, HeadFactory] = {
    "mcan": lambda c: MCAN(TINY_MCAN, grid_dim=c, vocab_size=VOCAB, n_answers=ANSWERS),
    "pythia": lambda c: Pythia(TINY_PYTHIA, grid_dim=c, vocab_size=VOCAB, n_answers=ANSWERS),
    "butd": lambda c: Pythia(TINY_BUTD, grid_dim=c, vocab_size=VOCAB, n_answers=ANSWERS),
}


def random_grid(batch: int, hw: tuple[int, int], dim: int) -> GridFeatures:
    """All-real grid of standard-normal features."""
    n = hw[0] * hw[1]
    return GridFeatures(torch.randn(batch, n, dim), torch.ones(batch, n, dtype=torch.bool), hw)  # [B, N, C]


def random_tokens(batch: int, length: int, lengths: list[int] | None = None) -> torch.Tensor:
    """[B, T] token ids in 1..VOCAB-1, with trailing zeros after lengths[i] tokens when given."""
    tokens = torch.randint(1, VOCAB, (batch, length))  # [B, T]
    for i, n in enumerate(lengths or []):
        tokens[i, n:] = 0
    return tokens
