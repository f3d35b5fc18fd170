"""Losses of the captioning task: token cross-entropy, and self-critical sequence training (SCST) with a
CIDEr-D reward whose document frequencies come from the training references, cached in the run directory.

SCST (Rennie et al. 2017, as ruotianluo/self-critical.pytorch trains it, captioning/modules/loss_wrapper.py,
utils/rewards.py, modules/losses.py RewardCriterion):
- k captions are sampled per image; each is scored with CIDEr-D against ALL references of its image;
- the baseline of a sample is the reward of the image's greedy caption (decoded in eval mode, no grad), or,
  with `baseline="mean"`, the mean reward of the image's other k-1 samples (self-critical's "new self-critical");
- loss = -sum_rows,t (reward - baseline) * log p(token_t) * mask / sum(mask): the mean over every real token
  (eos included) of every sample, as RewardCriterion's reduction="mean" does.

Sentences are word ids cut after eos (eos counted as a word, as self-critical's `array_to_str` keeps the end
token 0): references are their first max_length words + eos; a sample that hit max_len has no eos. The df
corpus is one document per training image (its references in that form), and log(N) uses the number of
training images, as the `coco-train-idxs.p` file of self-critical does; that file is not shipped with the
official code (SCST could not start without it): here it is computed from the training split once and
cached as `cider_df.npz` in the run directory.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from clipvil.common.atomic import atomic_write
from clipvil.metrics.cider import CiderD, DfTable

DF_FILE = "cider_df.npz"


def xe_loss(logprobs: torch.Tensor, targets: torch.Tensor, pad: int) -> torch.Tensor:
    """Token cross-entropy averaged over every real target token (eos included), as self-critical's
    LanguageModelCriterion: logprobs [R, L, V], targets [R, L] (pad after the end)."""
    mask = targets != pad  # [R, L]
    picked = logprobs.gather(2, targets.unsqueeze(2)).squeeze(2)  # [R, L]
    return -(picked * mask).sum() / mask.sum().clamp(min=1)


def scst_baseline(rewards: np.ndarray, greedy: np.ndarray | None) -> np.ndarray:
    """Baseline [B, k] of each sample's reward [B, k]: the greedy caption's reward [B] of its image, or (greedy
    None) the mean reward of the image's other samples (needs k >= 2)."""
    if greedy is not None:
        return np.repeat(greedy[:, None], rewards.shape[1], axis=1)
    k = rewards.shape[1]
    if k < 2:
        raise ValueError("task.scst_baseline=mean needs task.scst_samples >= 2")
    return (rewards.sum(axis=1, keepdims=True) - rewards) / (k - 1)


def scst_loss(logprobs: torch.Tensor, mask: torch.Tensor, advantage: torch.Tensor) -> torch.Tensor:
    """-(advantage * log-probs) over the real tokens of the samples, divided by their number: logprobs and
    mask [R, L] (DecodeOutput of sample_decode), advantage [R] (reward - baseline, no grad)."""
    weights = mask.to(logprobs.dtype)  # [R, L]
    return -(advantage[:, None].to(logprobs.dtype) * logprobs * weights).sum() / weights.sum().clamp(min=1)


def sentences(tokens: torch.Tensor, lengths: torch.Tensor) -> list[tuple[int, ...]]:
    """Decoded rows [R, L] cut at their lengths [R] (eos included where produced) as tuples of ids."""
    return [tuple(row[:n]) for row, n in zip(tokens.tolist(), lengths.tolist())]


class CaptionReward:
    """CIDEr-D with document frequencies fixed from a corpus of training references (one document per image)."""

    def __init__(self, scorer: CiderD) -> None:
        self.scorer = scorer

    @classmethod
    def from_corpus(cls, corpus: Sequence[Sequence[tuple[int, ...]]]) -> CaptionReward:
        return cls(CiderD.from_corpus(corpus))

    def score(self, candidates: Sequence[tuple[int, ...]], references: Sequence[Sequence[tuple[int, ...]]],
              groups: Sequence[int] | np.ndarray) -> np.ndarray:
        """[len(candidates)] CIDEr-D of candidate i against references[groups[i]] (all references of its image).

        metrics.cider.CiderD.score fails when no candidate n-gram occurs in any reference (an int64 bincount
        of no weights, e.g. a batch of garbage samples early in SCST); with fixed document frequencies each
        candidate is scored on its own, so a copy of one reference appended as an extra candidate guarantees
        a match and leaves the other scores unchanged."""
        groups = np.asarray(groups, dtype=np.int64)  # [C]
        if len(groups) == 0:
            raise ValueError("CaptionReward.score: no candidates")
        probe = int(groups[0])
        scores = self.scorer.score([*candidates, references[probe][0]], references, np.append(groups, probe))
        return scores[:-1]

    def save(self, path: Path, fingerprint: str) -> None:
        """Writes the df table (atomically) with `fingerprint` naming what it was computed from."""
        table = self.scorer.df_table()
        arrays = {f"keys{k}": keys for k, keys in enumerate(table.keys)}
        arrays["counts"], arrays["tokens"] = table.counts, table.tokens
        meta = {"n_documents": table.n_documents, "n": table.n, "sigma": table.sigma, "fingerprint": fingerprint}
        arrays["meta"] = np.array(json.dumps(meta))

        def write(tmp: Path) -> None:
            with open(tmp, "wb") as handle:
                np.savez(handle, **arrays)

        atomic_write(path, write)

    @classmethod
    def load(cls, path: Path, fingerprint: str) -> CaptionReward:
        """Reads a table written by `save`; refuses one computed from other references or another vocabulary."""
        with np.load(path, allow_pickle=False) as data:
            meta = json.loads(str(data["meta"]))
            if meta["fingerprint"] != fingerprint:
                raise ValueError(f"{path}: CIDEr-D document frequencies of other training references or another "
                                 "vocabulary; delete the file to recompute it")
            n_orders = sum(1 for name in data.files if name.startswith("keys"))
            table = DfTable([data[f"keys{k}"] for k in range(n_orders)], data["counts"], int(meta["n_documents"]),
                            data["tokens"], int(meta["n"]), float(meta["sigma"]))
        return cls(CiderD.from_df_table(table))


def corpus_fingerprint(words: Sequence[str], corpus: Sequence[Sequence[tuple[int, ...]]]) -> str:
    """A digest of the vocabulary and the df corpus (what a cached df table must have been made from)."""
    digest = hashlib.sha256("\n".join(words).encode("utf-8"))
    for doc in corpus:
        digest.update(repr(doc).encode("ascii"))
    return digest.hexdigest()
