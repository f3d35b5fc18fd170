"""Word-level question vocabulary for the VQA heads (MCAN, Pythia), as mcan-vqa tokenises questions."""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from itertools import chain
from pathlib import Path

import torch

_STRIP = re.compile(r"[.,'!?\"()*#:;]")
PAD, UNK = "<pad>", "<unk>"


def tokenize_question(text: str) -> list[str]:
    """Lower-case, delete . , ' ! ? " ( ) * # : ;, split on spaces, '-' and '/' (mcan-vqa's rule)."""
    return _STRIP.sub("", text.lower()).replace("-", " ").replace("/", " ").split()


@dataclass(frozen=True)
class QuestionVocab:
    """Question words; id 0 = <pad>, 1 = <unk>, then words by frequency (ties alphabetical)."""

    words: tuple[str, ...]
    max_tokens: int = 14  # questions are clipped to this many tokens (mcan-vqa: 14)
    word2id: dict[str, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.words[:2] != (PAD, UNK):
            raise ValueError(f"QuestionVocab: the first words must be {PAD!r}, {UNK!r}")
        object.__setattr__(self, "word2id", {w: i for i, w in enumerate(self.words)})

    @classmethod
    def build(cls, questions: Iterable[str], min_count: int = 1, max_tokens: int = 14) -> QuestionVocab:
        """Words seen at least `min_count` times in `questions`."""
        counts = Counter(w for q in questions for w in tokenize_question(q))
        kept = sorted((w for w, n in counts.items() if n >= min_count), key=lambda w: (-counts[w], w))
        return cls((PAD, UNK, *kept), max_tokens)

    @classmethod
    def from_splits(
        cls, *question_sets: Iterable[str], min_count: int = 1, max_tokens: int = 14
    ) -> QuestionVocab:
        """Words of several splits' questions counted together, e.g. (train, val, test, vg).

        mcan-vqa builds its vocabulary this way, from every question of train + val + test (+ Visual Genome),
        so that no evaluation word is <unk> and each gets its GloVe row; MMF ships a fixed 100k word list
        instead. Counts (for `min_count`) are over all the sets; the order is by frequency, as `build`."""
        if not question_sets:
            raise ValueError("QuestionVocab.from_splits: give at least one set of questions")
        return cls.build(chain.from_iterable(question_sets), min_count, max_tokens)

    def __len__(self) -> int:
        return len(self.words)

    def encode(self, question: str) -> list[int]:
        """Ids of the first max_tokens words (unknown → <unk>), no padding."""
        return [self.word2id.get(w, 1) for w in tokenize_question(question)[: self.max_tokens]] or [1]

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps({"words": list(self.words), "max_tokens": self.max_tokens}))

    @classmethod
    def load(cls, path: str | Path) -> QuestionVocab:
        data = json.loads(Path(path).read_text())
        return cls(tuple(data["words"]), int(data["max_tokens"]))


def question_tokens(token_lists: list[list[int]]) -> torch.Tensor:
    """Token id lists → a [B, T] batch padded with 0 at the end."""
    tokens = torch.zeros(len(token_lists), max(len(t) for t in token_lists), dtype=torch.long)  # [B, T]
    for i, ids in enumerate(token_lists):
        tokens[i, : len(ids)] = torch.tensor(ids)
    return tokens
