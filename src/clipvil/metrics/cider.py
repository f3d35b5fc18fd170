"""Fast CIDEr-D: the same numbers as pycocoevalcap's `Cider` (to ~1e-12), vectorised with numpy.

CIDEr-D (Vedantam et al. 2015, as coded in pycocoevalcap/cider and ruotianluo/cider's CiderD): for n = 1..4,
each sentence is a vector of n-gram tf-idf weights, tf * (log(N_docs) - log(max(1, df))); a candidate is
compared with each reference by a clipped cosine, sum(min(w_c, w_r) * w_r) / (|w_c| |w_r|), times a length
penalty exp(-(l_c - l_r)^2 / (2 sigma^2)); the score averages over n and references and is multiplied by 10.
Quirks kept on purpose: the "length" is the number of bigrams (max(words - 1, 0)), and in corpus mode
N_docs is the number of *candidates* and a reference set shared by k candidates counts k times in df.

Tokenisation: a sentence is either a string, split on whitespace exactly like pycocoevalcap (so give it
already tokenised text: PTB-tokenised and lower-cased for COCO evaluation; vocabulary words joined by
spaces for SCST), or a sequence of hashable tokens (e.g. word ids, already cut at the end token).

How it is fast: tokens become integer ids; the n-grams of order k get dense ids from np.unique over
(id of the (k-1)-gram prefix, last token); term frequencies, document frequencies, norms and the
candidate-reference dot products are np.unique / np.bincount / np.searchsorted over flat arrays.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

Sentence = str | Sequence[Hashable]

_BASE = 1 << 24  # n-gram keys are prefix_id * _BASE + token_id: at most 16.7M distinct tokens


class _Vocab(dict[Hashable, int]):
    """Token -> id, growing: an unseen token gets the next id."""

    def __missing__(self, token: Hashable) -> int:
        if len(self) >= _BASE:
            raise ValueError(f"CIDEr-D: more than {_BASE} distinct tokens")
        index = self[token] = len(self)
        return index


@dataclass(frozen=True)
class _NGrams:
    """The (sentence, n-gram) term frequencies of a batch of sentences, one array per order."""

    sent: list[np.ndarray]  # per order: [E_k] sentence index of each entry
    gram: list[np.ndarray]  # per order: [E_k] dense n-gram id, indexes keys[k]
    tf: list[np.ndarray]  # per order: [E_k] count of the n-gram in the sentence
    keys: list[np.ndarray]  # per order: [U_k] sorted keys (prefix id * _BASE + last token id)


def _count_ngrams(tokens: np.ndarray, lengths: np.ndarray, n: int) -> _NGrams:
    """Term frequencies of all 1..n-grams of the sentences laid end to end in `tokens` ([T] ids)."""
    sent_of_token = np.repeat(np.arange(len(lengths)), lengths)  # [T]
    left = np.repeat(np.cumsum(lengths), lengths) - np.arange(len(tokens))  # [T] tokens to the sentence end
    prefix = np.empty(0, dtype=np.int64)
    out = _NGrams([], [], [], [])
    for k in range(1, n + 1):
        starts = np.flatnonzero(left >= k)  # [G] first token of each k-gram occurrence
        last = tokens[starts + k - 1]  # [G]
        key = last if k == 1 else prefix[starts] * _BASE + last  # [G]
        keys, local = np.unique(key, return_inverse=True)  # [U], [G]
        prefix = np.full(len(tokens), -1, dtype=np.int64)  # [T] id of the k-gram starting here
        prefix[starts] = local
        pairs, tf = np.unique(sent_of_token[starts] * len(keys) + local, return_counts=True)  # [E], [E]
        out.sent.append(pairs // max(len(keys), 1))
        out.gram.append(pairs % max(len(keys), 1))
        out.tf.append(tf)
        out.keys.append(keys)
    return out


def _document_frequency(grams: _NGrams, doc_of_sent: np.ndarray, doc_weight: np.ndarray) -> list[np.ndarray]:
    """Per order, [U_k] sum of doc_weight over the documents whose sentences contain each n-gram."""
    out = []
    for k, keys in enumerate(grams.keys):
        mine = doc_of_sent[grams.sent[k]] >= 0  # [E] entries of sentences that belong to a document
        docs = doc_of_sent[grams.sent[k][mine]]  # [E']
        present = np.unique(docs * len(keys) + grams.gram[k][mine])  # [P] distinct (document, n-gram)
        out.append(np.bincount(present % max(len(keys), 1), weights=doc_weight[present // max(len(keys), 1)],
                               minlength=len(keys)))  # [U_k]
    return out


@dataclass(frozen=True)
class _DocumentFrequency:
    keys: list[np.ndarray]  # per order: [U_k] sorted n-gram keys of the corpus
    counts: list[np.ndarray]  # per order: [U_k] number of documents containing the n-gram
    n_documents: int

    def lookup(self, keys: list[np.ndarray]) -> list[np.ndarray]:
        """Document frequencies of n-grams given by another batch's keys (0 for unseen n-grams)."""
        out, index_prev = [], np.empty(0, dtype=np.int64)
        for k, query_keys in enumerate(keys):
            if k == 0:
                query, valid = query_keys, np.ones(len(query_keys), dtype=bool)  # [U] token ids
            else:
                corpus_prefix = index_prev[query_keys // _BASE]  # [U] prefix id in the corpus, -1 if unseen
                valid = corpus_prefix >= 0
                query = corpus_prefix * _BASE + query_keys % _BASE  # [U]
            table = self.keys[k]
            pos = np.minimum(np.searchsorted(table, query), max(len(table) - 1, 0))  # [U]
            found = valid & (table[pos] == query) if len(table) else np.zeros(len(query), dtype=bool)
            index_prev = np.where(found, pos, -1)
            out.append(np.where(found, self.counts[k][pos] if len(table) else 0, 0).astype(np.float64))
        return out


class CiderD:
    """CIDEr-D scorer; optionally with document frequencies fixed once from a reference corpus (SCST).

    Without a corpus (`CiderD()`), every `score` call takes document frequencies from its own references,
    which is what pycocoevalcap's `Cider` does (a corpus-level evaluation). With `CiderD.from_corpus(...)`
    the df table and log(number of corpus documents) are fixed, like ruotianluo's CiderD with a cached df.
    """

    def __init__(self, n: int = 4, sigma: float = 6.0) -> None:
        if n < 1 or sigma <= 0:
            raise ValueError(f"CIDEr-D: need n >= 1 and sigma > 0, got n={n}, sigma={sigma}")
        self.n, self.sigma = n, sigma
        self._vocab = _Vocab()
        self._df: _DocumentFrequency | None = None

    @classmethod
    def from_corpus(cls, corpus: Sequence[Sequence[Sentence]], n: int = 4, sigma: float = 6.0) -> CiderD:
        """A scorer whose df comes from `corpus`: one document per image (its list of reference sentences)."""
        scorer = cls(n, sigma)
        if not corpus:
            raise ValueError("CIDEr-D: empty document-frequency corpus")
        sentences = [s for doc in corpus for s in doc]
        tokens, lengths = scorer._encode(sentences)
        grams = _count_ngrams(tokens, lengths, n)
        doc_of_sent = np.repeat(np.arange(len(corpus)), [len(doc) for doc in corpus])  # [S]
        counts = _document_frequency(grams, doc_of_sent, np.ones(len(corpus)))
        scorer._df = _DocumentFrequency(grams.keys, counts, len(corpus))
        return scorer

    def _encode(self, sentences: Sequence[Sentence]) -> tuple[np.ndarray, np.ndarray]:
        token_lists = [s.split() if isinstance(s, str) else s for s in sentences]
        lengths = np.fromiter(map(len, token_lists), dtype=np.int64, count=len(token_lists))  # [S]
        flat = itertools.chain.from_iterable(token_lists)
        tokens = np.fromiter(map(self._vocab.__getitem__, flat), dtype=np.int64, count=int(lengths.sum()))  # [T]
        return tokens, lengths

    def score(
        self,
        candidates: Sequence[Sentence],
        references: Sequence[Sequence[Sentence]],
        groups: Sequence[int] | np.ndarray | None = None,
    ) -> np.ndarray:
        """[len(candidates)] CIDEr-D of each candidate against its reference set.

        `references` holds reference sets; candidate i is scored against `references[groups[i]]` (default:
        `references[i]`), so many sampled captions of one image share one tokenised reference set.
        """
        group_of = self._check_groups(candidates, references, groups)
        n_cand = len(candidates)
        ref_counts = np.array([len(r) for r in references], dtype=np.int64)  # [R]
        tokens, lengths = self._encode(list(candidates) + [s for refs in references for s in refs])
        grams = _count_ngrams(tokens, lengths, self.n)
        doc_of_sent = np.concatenate([np.full(n_cand, -1), np.repeat(np.arange(len(references)), ref_counts)])
        if self._df is None:
            usage = np.bincount(group_of, minlength=len(references)).astype(np.float64)  # [R]
            df, n_docs = _document_frequency(grams, doc_of_sent, usage), n_cand
        else:
            df, n_docs = self._df.lookup(grams.keys), self._df.n_documents
        ref_len = np.log(float(n_docs))
        weights = [tf * (ref_len - np.log(np.maximum(1.0, d[g]))) for tf, d, g in zip(grams.tf, df, grams.gram)]
        return self._cosines(grams, weights, lengths, group_of, doc_of_sent, ref_counts)

    def _check_groups(self, candidates: Sequence[Sentence], references: Sequence[Sequence[Sentence]],
                      groups: Sequence[int] | np.ndarray | None) -> np.ndarray:
        if groups is None:
            if len(references) != len(candidates):
                raise ValueError(f"CIDEr-D: {len(candidates)} candidates but {len(references)} reference sets")
            group_of = np.arange(len(candidates))
        else:
            group_of = np.asarray(groups, dtype=np.int64)  # [C]
            if group_of.shape != (len(candidates),):
                raise ValueError(f"CIDEr-D: groups has shape {group_of.shape}, expected ({len(candidates)},)")
            if len(group_of) and (group_of.min() < 0 or group_of.max() >= len(references)):
                raise ValueError(f"CIDEr-D: groups must index the {len(references)} reference sets")
        for g in np.unique(group_of):
            if len(references[g]) == 0:
                raise ValueError(f"CIDEr-D: reference set {g} is empty")
        if len(candidates) == 0:
            raise ValueError("CIDEr-D: no candidates")
        return group_of

    def _cosines(self, grams: _NGrams, weights: list[np.ndarray], lengths: np.ndarray, group_of: np.ndarray,
                 doc_of_sent: np.ndarray, ref_counts: np.ndarray) -> np.ndarray:
        n, n_cand, n_sent = self.n, len(group_of), len(lengths)
        offsets = np.cumsum([0] + [len(keys) for keys in grams.keys])  # [n+1] order offsets of global ids
        sent = np.concatenate(grams.sent)  # [E] all entries, all orders
        gram = np.concatenate([g + offsets[k] for k, g in enumerate(grams.gram)])  # [E] global n-gram id
        order = np.concatenate([np.full(len(g), k) for k, g in enumerate(grams.gram)])  # [E]
        weight = np.concatenate(weights)  # [E]
        norm = np.sqrt(np.bincount(sent * n + order, weights=weight**2, minlength=n_sent * n)).reshape(n_sent, n)
        # Join candidate entries with the entries of the references of their group on the n-gram id.
        is_ref = sent >= n_cand
        ref_entries = np.flatnonzero(is_ref)  # [Er]
        ref_key = doc_of_sent[sent[ref_entries]] * offsets[-1] + gram[ref_entries]  # [Er]
        sort = np.argsort(ref_key, kind="stable")
        ref_entries, ref_key = ref_entries[sort], ref_key[sort]
        cand_entries = np.flatnonzero(~is_ref)  # [Ec]
        cand_key = group_of[sent[cand_entries]] * offsets[-1] + gram[cand_entries]  # [Ec]
        lo, hi = np.searchsorted(ref_key, cand_key, "left"), np.searchsorted(ref_key, cand_key, "right")
        hits = hi - lo  # [Ec] references of the group sharing the n-gram
        cand_hit = np.repeat(cand_entries, hits)  # [H]
        ref_hit = ref_entries[np.repeat(lo - np.cumsum(hits) + hits, hits) + np.arange(hits.sum())]  # [H]
        # Pairs (candidate, reference of its group), contiguous per candidate.
        pairs_per_cand = ref_counts[group_of]  # [C]
        pair_start = np.cumsum(pairs_per_cand) - pairs_per_cand  # [C]
        ref_start = n_cand + np.cumsum(ref_counts) - ref_counts  # [R] first sentence of each reference set
        pair_cand = np.repeat(np.arange(n_cand), pairs_per_cand)  # [P]
        pair_ref = ref_start[group_of[pair_cand]] + np.arange(len(pair_cand)) - pair_start[pair_cand]  # [P]
        hit_pair = pair_start[sent[cand_hit]] + sent[ref_hit] - ref_start[group_of[sent[cand_hit]]]  # [H]
        contrib = np.minimum(weight[cand_hit], weight[ref_hit]) * weight[ref_hit]  # [H]
        num = np.bincount(hit_pair * n + order[cand_hit], weights=contrib, minlength=len(pair_cand) * n)
        num = num.reshape(len(pair_cand), n)  # [P, n]
        denom = norm[pair_cand] * norm[pair_ref]  # [P, n]
        val = np.divide(num, denom, out=num.copy(), where=denom != 0)  # [P, n]
        bigrams = np.maximum(lengths - 1, 0) if n >= 2 else np.zeros_like(lengths)  # [S] pycocoevalcap "length"
        delta = (bigrams[pair_cand] - bigrams[pair_ref]).astype(np.float64)  # [P]
        val *= (math.e ** (-(delta**2) / (2 * self.sigma**2)))[:, None]  # [P, n]
        per_cand = np.add.reduceat(val, pair_start, axis=0)  # [C, n] sum over references
        return per_cand.mean(axis=1) / pairs_per_cand * 10.0  # [C]


def cider_d(
    predictions: Mapping[Hashable, Sentence], references: Mapping[Hashable, Sequence[Sentence]],
    n: int = 4, sigma: float = 6.0,
) -> tuple[float, dict[Hashable, float]]:
    """Corpus CIDEr-D like pycocoevalcap's Cider().compute_score: (mean score, {id: score}).

    Both mappings must have the same ids; sentences must already be tokenised (see the module docstring).
    """
    missing, extra = references.keys() - predictions.keys(), predictions.keys() - references.keys()
    if missing or extra:
        raise ValueError(
            f"cider_d: ids differ: {len(missing)} without prediction (e.g. {sorted(missing, key=repr)[:5]}), "
            f"{len(extra)} without references (e.g. {sorted(extra, key=repr)[:5]})"
        )
    ids = list(references)
    scores = CiderD(n, sigma).score([predictions[i] for i in ids], [references[i] for i in ids])
    return float(np.mean(scores)), dict(zip(ids, scores.tolist()))
