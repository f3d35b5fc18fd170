"""The question encoder and its token checks."""

from __future__ import annotations

import pytest
import torch

from clipvil.nn.text import QuestionEncoder, question_mask


def test_mask_marks_real_tokens() -> None:
    tokens = torch.tensor([[4, 5, 6], [7, 0, 0]])
    assert question_mask(tokens).tolist() == [[True, True, True], [True, False, False]]


@pytest.mark.parametrize(
    ("tokens", "message"),
    [
        (torch.tensor([[1.0, 2.0]]), "integer tensor"),
        (torch.tensor([1, 2, 3]), r"\[B, T\]"),
        (torch.tensor([[1, 2], [0, 0]]), r"batch item\(s\) \[1\] are all padding"),
        (
            torch.tensor([[1, 0, 2], [3, 4, 0], [0, 5, 6]]),
            r"batch item\(s\) \[0, 2\] have padding \(0\) before",
        ),
    ],
)
def test_bad_token_batches_are_rejected(tokens: torch.Tensor, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        question_mask(tokens)


@pytest.mark.parametrize("rnn", ["lstm", "gru"])
def test_trailing_padding_leaves_real_states_unchanged(rnn: str) -> None:
    encoder = QuestionEncoder(vocab_size=20, embed_dim=6, hidden_dim=5, rnn=rnn)  # type: ignore[arg-type]
    tokens = torch.tensor([[3, 9, 4]])
    padded = torch.tensor([[3, 9, 4, 0, 0, 0]])
    states, mask = encoder(tokens)  # [1, 3, 5]
    padded_states, padded_mask = encoder(padded)  # [1, 6, 5]
    assert encoder.out_dim == 5 and mask.all() and padded_mask.tolist() == [[True] * 3 + [False] * 3]
    torch.testing.assert_close(padded_states[:, :3], states)


def test_unknown_rnn_and_bad_word_vectors() -> None:
    with pytest.raises(ValueError, match="unknown question rnn 'transformer'"):
        QuestionEncoder(10, 4, 4, rnn="transformer")  # type: ignore[arg-type]
    encoder = QuestionEncoder(10, 4, 4)
    with pytest.raises(ValueError, match=r"word vectors must have shape \(10, 4\), got \(10, 3\)"):
        encoder.load_word_vectors(torch.zeros(10, 3))
