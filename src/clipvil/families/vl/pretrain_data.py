"""Inputs of CLIP-ViL_p pre-training (LXMERT's objectives): masked language modelling, image-text matching,
and QA over the pre-training answer table.

Pure functions over token ids and answer ids, driven by a ``numpy.random.Generator``: the same generator
state gives the same result, in any process.

- `mask_tokens` (BERT's rule, as LXMERT's ``random_word``): each non-special token is chosen with probability
  `rate` (0.15); a chosen token becomes [MASK] with probability 0.8, a random token with 0.1, stays with 0.1;
  its label is its original id, every other label is `IGNORE_INDEX` (-100). Special tokens ([CLS], [SEP],
  [PAD], [UNK], [MASK]) are never chosen and never drawn as the random token (LXMERT could draw any
  vocabulary entry).
- `itm_pairs`: a fixed share (half) of the items get the sentence of another item whose image differs —
  never their own image — with ITM label 0; the rest keep their own sentence, label 1. LXMERT flipped a coin
  per item; here the share is exact, so every batch is balanced.
- `qa_target`: LXMERT's QA label — one answer id drawn with probability proportional to its score, or
  `IGNORE_INDEX` when the sentence has no label (captions), an empty one, or is paired with another image.
  Answer ids are those of `clipvil.data.lxmert.read_lxmert` with `load_lxmert_answer_table` (all_ans.json).
- `pretrain_targets`: all three for a batch, in the reference's order: ITM picks each image's sentence, QA
  keeps the image's own label only when matched, MLM masks the sentence actually shown (mismatched ones too).
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from clipvil.data.tokenizers import BertTextTokenizer

IGNORE_INDEX = -100  # label of positions / items without a target (PyTorch's CrossEntropyLoss default)
_NEGATIVE_ROUNDS = 32  # vectorised redraws of same-image partners before an exact per-item draw


@dataclass(frozen=True)
class MaskingSpec:
    """What `mask_tokens` needs to know of the vocabulary, and BERT's rates."""

    vocab_size: int  # number of token ids
    mask_id: int  # id of [MASK]
    special_ids: frozenset[int]  # ids never masked nor drawn as random tokens ([CLS], [SEP], [PAD], ...)
    rate: float = 0.15  # probability that a non-special token is chosen for prediction
    mask_frac: float = 0.8  # of the chosen: share replaced by [MASK]
    random_frac: float = 0.1  # of the chosen: share replaced by a random non-special token (rest unchanged)

    def __post_init__(self) -> None:
        if not 0.0 <= self.rate <= 1.0:
            raise ValueError(f"MaskingSpec: rate must be in [0, 1], got {self.rate}")
        if self.mask_frac < 0 or self.random_frac < 0 or self.mask_frac + self.random_frac > 1.0:
            raise ValueError(
                f"MaskingSpec: mask_frac {self.mask_frac} + random_frac {self.random_frac} must lie in [0, 1]"
            )
        if self.mask_id not in self.special_ids:
            raise ValueError(f"MaskingSpec: the [MASK] id {self.mask_id} must be one of the special ids")
        if len(self.special_ids) >= self.vocab_size or not all(
            0 <= i < self.vocab_size for i in self.special_ids
        ):
            raise ValueError(
                f"MaskingSpec: special ids {sorted(self.special_ids)} "
                f"do not fit a vocabulary of {self.vocab_size}"
            )

    @classmethod
    def from_tokenizer(cls, tokenizer: BertTextTokenizer, rate: float = 0.15) -> MaskingSpec:
        """From a BERT tokenizer: its vocabulary size, [MASK] and all its special ids."""
        tok = tokenizer.tokenizer
        if tok.mask_token_id is None:
            raise ValueError(f"{tokenizer.directory}: the tokenizer has no [MASK] token")
        return cls(len(tok), int(tok.mask_token_id), frozenset(int(i) for i in tok.all_special_ids), rate)


def _random_regular_ids(spec: MaskingSpec, n: int, rng: np.random.Generator) -> np.ndarray:
    """n ids drawn uniformly from the non-special ids."""
    ids = rng.integers(0, spec.vocab_size - len(spec.special_ids), size=n)  # [n] rank among regular ids
    for special in sorted(spec.special_ids):  # shift past each special id at or below, in increasing order
        ids += ids >= special
    return ids


def mask_tokens(
    input_ids: Sequence[int] | Sequence[Sequence[int]] | np.ndarray,
    spec: MaskingSpec,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """Masked-LM inputs: (masked ids, labels), both int64 of the shape of `input_ids` ([L] or [B, L])."""
    ids = np.asarray(input_ids, dtype=np.int64)
    if ids.size and (ids.min() < 0 or ids.max() >= spec.vocab_size):
        raise ValueError(
            f"mask_tokens: token ids must lie in [0, {spec.vocab_size}), got {ids.min()}..{ids.max()}"
        )
    regular = ~np.isin(ids, np.fromiter(spec.special_ids, dtype=np.int64))  # [..., L]
    chosen = regular & (rng.random(ids.shape) < spec.rate)  # [..., L]
    action = rng.random(ids.shape)  # [..., L]
    to_mask = chosen & (action < spec.mask_frac)
    to_random = chosen & (action >= spec.mask_frac) & (action < spec.mask_frac + spec.random_frac)
    out = ids.copy()
    out[to_mask] = spec.mask_id
    out[to_random] = _random_regular_ids(spec, int(to_random.sum()), rng)
    labels = np.where(chosen, ids, IGNORE_INDEX)  # [..., L]
    return out, labels


@dataclass(frozen=True)
class ItmPairs:
    """Which sentence each item's image is shown with."""

    text_index: np.ndarray  # [N] int64: the item whose sentence goes with item i's image (i when matched)
    matched: np.ndarray  # [N] int64: 1 = the image's own sentence, 0 = another image's


def itm_pairs(
    image_ids: Sequence[Hashable], rng: np.random.Generator, mismatch_rate: float = 0.5
) -> ItmPairs:
    """Image-text matching pairs over N items (sentence i belongs to image image_ids[i]).

    round(N * mismatch_rate) items, chosen uniformly, get the sentence of a uniformly drawn item of another
    image. ValueError when negatives are asked for and all items show one image."""
    if not 0.0 <= mismatch_rate <= 1.0:
        raise ValueError(f"itm_pairs: mismatch_rate must be in [0, 1], got {mismatch_rate}")
    n = len(image_ids)
    _, codes = np.unique(np.asarray(image_ids, dtype=object).astype(str), return_inverse=True)  # [N]
    n_neg = int(np.floor(n * mismatch_rate + 0.5))
    if n_neg and codes.max(initial=0) == codes.min(initial=0):
        raise ValueError(
            f"itm_pairs: all {n} sentences show image {image_ids[0]!r}; a mismatched pair needs two images"
        )
    negatives = rng.permutation(n)[:n_neg]  # [n_neg]
    partners = rng.integers(0, n, size=n_neg)  # [n_neg]
    for _ in range(_NEGATIVE_ROUNDS):
        same = codes[partners] == codes[negatives]
        if not same.any():
            break
        partners[same] = rng.integers(0, n, size=int(same.sum()))
    for k in np.flatnonzero(codes[partners] == codes[negatives]):  # rare: images holding most sentences
        partners[k] = rng.choice(np.flatnonzero(codes != codes[negatives[k]]))
    text_index = np.arange(n, dtype=np.int64)
    text_index[negatives] = partners
    matched = np.ones(n, dtype=np.int64)
    matched[negatives] = 0
    return ItmPairs(text_index, matched)


def qa_target(label: Mapping[int, float] | None, matched: bool, rng: np.random.Generator) -> int:
    """LXMERT's QA label: an answer id drawn with probability ∝ score; IGNORE_INDEX without a usable label
    (None, empty, scores summing to 0) or when the sentence is shown with another image."""
    if not matched or not label:
        return IGNORE_INDEX
    answers = list(label)
    scores = np.asarray([label[a] for a in answers], dtype=np.float64)
    if (scores < 0).any():
        raise ValueError(f"qa_target: negative answer score in {dict(label)}")
    total = scores.sum()
    if total <= 0:
        return IGNORE_INDEX
    if len(answers) == 1:
        return int(answers[0])
    return int(answers[rng.choice(len(answers), p=scores / total)])


@dataclass
class PretrainTargets:
    """One batch of pre-training inputs and targets (numpy; the collate makes tensors of them)."""

    input_ids: np.ndarray  # [B, L] int64: the masked ids of the sentence shown with each image
    attention_mask: np.ndarray  # [B, L] int64: that sentence's attention mask
    mlm_labels: np.ndarray  # [B, L] int64: original id where chosen for MLM, IGNORE_INDEX elsewhere
    itm_labels: np.ndarray  # [B] int64: 1 = matched, 0 = another image's sentence
    qa_labels: np.ndarray  # [B] int64: answer id, or IGNORE_INDEX
    text_index: np.ndarray  # [B] int64: whose sentence each image got


def pretrain_targets(
    input_ids: np.ndarray,
    attention_mask: np.ndarray,
    image_ids: Sequence[Hashable],
    labels: Sequence[Mapping[int, float] | None],
    spec: MaskingSpec,
    rng: np.random.Generator,
    mismatch_rate: float = 0.5,
) -> PretrainTargets:
    """MLM + ITM + QA for a batch of B sentences (ids [B, L] with specials and padding, one image id and one
    LXMERT label — answer id → score, None for captions — each). mismatch_rate 0 turns ITM off."""
    ids = np.asarray(input_ids, dtype=np.int64)
    att = np.asarray(attention_mask, dtype=np.int64)
    if ids.ndim != 2 or att.shape != ids.shape or len(image_ids) != len(ids) or len(labels) != len(ids):
        raise ValueError(
            f"pretrain_targets: ids {ids.shape}, attention mask {att.shape}, {len(image_ids)} image ids and "
            f"{len(labels)} labels do not describe one batch"
        )
    pairs = itm_pairs(image_ids, rng, mismatch_rate)
    qa = np.asarray([qa_target(lab, bool(m), rng) for lab, m in zip(labels, pairs.matched)], dtype=np.int64)
    masked, mlm_labels = mask_tokens(ids[pairs.text_index], spec, rng)  # [B, L] each
    return PretrainTargets(masked, att[pairs.text_index], mlm_labels, pairs.matched, qa, pairs.text_index)


__all__ = [
    "IGNORE_INDEX",
    "ItmPairs",
    "MaskingSpec",
    "PretrainTargets",
    "itm_pairs",
    "mask_tokens",
    "pretrain_targets",
    "qa_target",
]
