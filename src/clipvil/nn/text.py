"""Question encoder shared by the VQA heads: word embedding + one recurrent layer (LSTM or GRU).

Token ids are a LongTensor [B, T] with 0 as padding, and padding must be trailing (a question's tokens
first, then zeros). The recurrent layer runs left to right, so trailing padding cannot change the
states at real positions; the heads then mask the padded positions out of every attention. The paper's
heads initialise the 300-d embedding with GloVe; no GloVe ships here, so the embedding starts random and
`load_word_vectors` copies in any [vocab, embed_dim] matrix a caller has.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

RNNKind = Literal["lstm", "gru"]

_RNNS: dict[str, type[nn.LSTM | nn.GRU]] = {"lstm": nn.LSTM, "gru": nn.GRU}


def question_mask(tokens: torch.Tensor) -> torch.Tensor:
    """[B, T] bool mask, True at real tokens, after checking that `tokens` is a valid question batch.

    Raises ValueError for a non-integer or non-2-D tensor, an empty question (all padding) or padding
    that is not trailing (a real token after a 0).
    """
    if tokens.dim() != 2 or tokens.dtype not in (torch.int64, torch.int32):
        raise ValueError(
            f"question tokens must be an integer tensor [B, T], got {tokens.dtype} {tuple(tokens.shape)}"
        )
    mask = tokens != 0  # [B, T]
    empty = ~mask.any(dim=1)  # [B]
    if bool(empty.any()):
        raise ValueError(
            f"question tokens: batch item(s) {empty.nonzero().flatten().tolist()} are all padding"
        )
    gaps = mask[:, 1:] & ~mask[:, :-1]  # [B, T-1] a real token right after a padding token
    if bool(gaps.any()):
        rows = gaps.any(dim=1).nonzero().flatten().tolist()
        raise ValueError(
            f"question tokens: batch item(s) {rows} have padding (0) before a real token; pad at the end"
        )
    return mask


class QuestionEncoder(nn.Module):
    """Embeds token ids and runs one unidirectional recurrent layer over them.

    Output: the recurrent states at every position [B, T, hidden_dim] and the token mask [B, T].
    """

    def __init__(self, vocab_size: int, embed_dim: int, hidden_dim: int, rnn: RNNKind = "lstm") -> None:
        super().__init__()
        if rnn not in _RNNS:
            raise ValueError(f"unknown question rnn {rnn!r}; known: {sorted(_RNNS)}")
        self.embedding = nn.Embedding(vocab_size, embed_dim)
        self.rnn = _RNNS[rnn](input_size=embed_dim, hidden_size=hidden_dim, num_layers=1, batch_first=True)

    @property
    def out_dim(self) -> int:
        """Width of each output state."""
        return self.rnn.hidden_size

    def load_word_vectors(self, vectors: torch.Tensor) -> None:
        """Copies a [vocab_size, embed_dim] matrix (e.g. GloVe rows in vocabulary order) into the table."""
        expected = tuple(self.embedding.weight.shape)
        if tuple(vectors.shape) != expected:
            raise ValueError(f"word vectors must have shape {expected}, got {tuple(vectors.shape)}")
        with torch.no_grad():
            self.embedding.weight.copy_(vectors)

    def forward(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """tokens [B, T] (0 = trailing padding) → (states [B, T, hidden_dim], mask [B, T], True = token)."""
        mask = question_mask(tokens)  # [B, T]
        embedded = self.embedding(tokens)  # [B, T, E]
        # The recurrence runs in the weights' dtype even under autocast: it is a small part of the cost, and
        # oneDNN has no bf16 LSTM on CPUs without native bf16 ("could not create a primitive descriptor").
        with torch.autocast(tokens.device.type, enabled=False):
            states, _ = self.rnn(embedded.to(self.embedding.weight.dtype))  # [B, T, H]
        return states, mask
