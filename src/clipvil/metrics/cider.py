"""Fast CIDEr-D: the same numbers as pycocoevalcap's `Cider` (to ~1e-14), vectorised with numpy.

CIDEr-D (Vedantam et al. 2015, as coded in pycocoevalcap/cider and ruotianluo/cider's CiderD): for n = 1..4,
each sentence is a vector of n-gram tf-idf weights, tf * (log(N_docs) - log(max(1, df))); a candidate is
compared with each reference by a clipped cosine, sum(min(w_c, w_r) * w_r) / (|w_c| |w_r|), times a length
penalty exp(-(l_c - l_r)^2 / (2 sigma^2)); the score averages over n and references and is multiplied by 10.
Quirks kept on purpose: the "length" is the number of bigrams (max(words - 1, 0)), and in corpus mode
N_docs is the number of *candidates* and a reference set shared by k candidates counts k times in df.

Tokenisation: a sentence is either a string, split on whitespace exactly like pycocoevalcap (so give it
already tokenised text: PTB-tokenised and lower-cased for COCO evaluation; vocabulary words joined by
spaces for SCST), or a sequence of hashable tokens (e.g. a list of int word ids cut at the end token;
convert tensors with .tolist(): tensor elements hash by identity).

How it is fast: tokens become integer ids; the n-grams of order k get dense ids from one argsort of the
keys (id of the (k-1)-gram prefix, last token); term frequencies, document frequencies, norms and the
clipped candidate-reference products are then run boundaries, np.bincount and np.searchsorted over flat
arrays: no Python loop over n-grams or sentence pairs.
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
    """The (sentence, n-gram) term frequencies of a batch of sentences, sorted by (n-gram id, sentence).

    N-gram ids are global over the orders: order k's ids are offsets[k-1] .. offsets[k] - 1.
    """

    sent: np.ndarray  # [E] sentence index of each entry
    gram: np.ndarray  # [E] n-gram id
    tf: np.ndarray  # [E] count of the n-gram in the sentence
    order: np.ndarray  # [E] n-gram order - 1
    keys: list[np.ndarray]  # per order: [U_k] sorted keys (prefix id within order k-1 * _BASE + last token)

    @property
    def n_grams(self) -> int:
        return sum(len(k) for k in self.keys)


def _sort_by_key_then_sentence(key: np.ndarray, sent: np.ndarray, n_sent: int) -> np.ndarray:
    """[G] permutation sorting occurrences by (key, sentence): one quicksort of key * n_sent + sentence when
    that fits in int64 (typical), else a stable sort of the keys (occurrences are in sentence order)."""
    if len(key) == 0 or int(key.max()) < np.iinfo(np.int64).max // max(n_sent, 1) - 1:
        return np.argsort(key * n_sent + sent)
    return np.argsort(key, kind="stable")


def _count_ngrams(tokens: np.ndarray, lengths: np.ndarray, n: int) -> _NGrams:
    """Term frequencies of all 1..n-grams of the sentences laid end to end in `tokens` ([T] ids).

    One argsort per order does it all: the occurrences sorted by (n-gram key, sentence) give the dense
    n-gram ids (runs of equal keys) and the term frequencies (runs of equal key and sentence).
    """
    sent_of_token = np.repeat(np.arange(len(lengths)), lengths)  # [T]
    left = np.repeat(np.cumsum(lengths), lengths) - np.arange(len(tokens))  # [T] tokens to the sentence end
    prefix = np.empty(0, dtype=np.int64)
    parts: dict[str, list[np.ndarray]] = {"sent": [], "gram": [], "tf": [], "order": [], "keys": []}
    offset = 0
    for k in range(1, n + 1):
        starts = np.flatnonzero(left >= k)  # [G] first token of each k-gram occurrence
        last = tokens[starts + k - 1]  # [G]
        key = last if k == 1 else prefix[starts] * _BASE + last  # [G]
        perm = _sort_by_key_then_sentence(key, sent_of_token[starts], len(lengths))  # [G]
        sorted_key, sorted_sent = key[perm], sent_of_token[starts[perm]]  # [G], [G]
        new_key = np.ones(len(perm), dtype=bool)  # [G] first occurrence of each distinct key
        np.not_equal(sorted_key[1:], sorted_key[:-1], out=new_key[1:])
        local_sorted = np.cumsum(new_key) - 1  # [G] dense id of each occurrence, in sorted order
        prefix = np.full(len(tokens), -1, dtype=np.int64)  # [T] id of the k-gram starting at each token
        prefix[starts[perm]] = local_sorted
        new_entry = new_key.copy()  # [G] first occurrence of each (n-gram, sentence)
        new_entry[1:] |= sorted_sent[1:] != sorted_sent[:-1]
        first = np.flatnonzero(new_entry)  # [E_k]
        parts["sent"].append(sorted_sent[first])
        parts["gram"].append(local_sorted[first] + offset)
        parts["tf"].append(np.diff(np.append(first, len(perm))))
        parts["order"].append(np.full(len(first), k - 1))
        parts["keys"].append(sorted_key[new_key])
        offset += len(parts["keys"][-1])
    return _NGrams(*(np.concatenate(parts[f]) for f in ("sent", "gram", "tf", "order")), keys=parts["keys"])


@dataclass(frozen=True)
class _DocEntries:
    """The entries of the sentences that belong to documents, sorted by (n-gram id, document)."""

    entry: np.ndarray  # [Ed] index into the _NGrams entries
    doc: np.ndarray  # [Ed]
    key: np.ndarray  # [Ed] n-gram id * n_docs + document, ascending

    @classmethod
    def build(cls, grams: _NGrams, doc_of_sent: np.ndarray, n_docs: int) -> _DocEntries:
        """`doc_of_sent` [S] is -1 for sentences outside documents and non-decreasing over the others."""
        doc = doc_of_sent[grams.sent]  # [E]
        entry = np.flatnonzero(doc >= 0)  # [Ed] still sorted by (n-gram, sentence), hence by (n-gram, doc)
        return cls(entry, doc[entry], grams.gram[entry] * n_docs + doc[entry])

    def document_frequency(self, grams: _NGrams, doc_weight: np.ndarray) -> np.ndarray:
        """[n_grams] sum of doc_weight over the documents containing each n-gram."""
        distinct = np.ones(len(self.key), dtype=bool)  # [Ed] first entry of each (n-gram, document)
        np.not_equal(self.key[1:], self.key[:-1], out=distinct[1:])
        return np.bincount(grams.gram[self.entry[distinct]], weights=doc_weight[self.doc[distinct]],
                           minlength=grams.n_grams)


@dataclass(frozen=True)
class _DocumentFrequency:
    keys: list[np.ndarray]  # per order: [U_k] sorted n-gram keys of the corpus
    counts: np.ndarray  # [sum U_k] number of documents containing each n-gram (orders stacked)
    n_documents: int

    def lookup(self, keys: list[np.ndarray]) -> np.ndarray:
        """Document frequencies of the n-grams of another batch, given by its keys (0 for unseen n-grams)."""
        out, index_prev, offset = [], np.empty(0, dtype=np.int64), 0
        for k, query_keys in enumerate(keys):
            if k == 0:
                query, valid = query_keys, np.ones(len(query_keys), dtype=bool)  # [U] token ids
            else:
                corpus_prefix = index_prev[query_keys // _BASE]  # [U] prefix id in the corpus, -1 if unseen
                valid = corpus_prefix >= 0
                query = corpus_prefix * _BASE + query_keys % _BASE  # [U]
            table = self.keys[k]
            if len(table) == 0:
                index_prev = np.full(len(query), -1, dtype=np.int64)
                out.append(np.zeros(len(query)))
                continue
            pos = np.minimum(np.searchsorted(table, query), len(table) - 1)  # [U]
            found = valid & (table[pos] == query)  # [U]
            index_prev = np.where(found, pos, -1)
            out.append(np.where(found, self.counts[offset + pos], 0.0))
            offset += len(table)
        return np.concatenate(out) if out else np.zeros(0)


@dataclass(frozen=True)
class DfTable:
    """A scorer's fixed document frequencies as plain arrays (np.savez-able): `CiderD.df_table` /
    `CiderD.from_df_table`. Integer tokens only (word ids)."""

    keys: list[np.ndarray]  # per order: [U_k] sorted n-gram keys of the corpus
    counts: np.ndarray  # [sum U_k] documents containing each n-gram (orders stacked)
    n_documents: int  # documents of the corpus (log N of the idf)
    tokens: np.ndarray  # [V] the token of each internal id, in id order (the keys are made of these ids)
    n: int  # n-gram orders
    sigma: float  # length-penalty width


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
        counts = _DocEntries.build(grams, doc_of_sent, len(corpus)).document_frequency(grams, np.ones(len(corpus)))
        scorer._df = _DocumentFrequency(grams.keys, counts, len(corpus))
        return scorer

    def df_table(self) -> DfTable:
        """The fixed document frequencies of a `from_corpus` scorer as plain arrays (to save and reload)."""
        if self._df is None:
            raise ValueError("CIDEr-D: this scorer has no corpus document frequencies (use CiderD.from_corpus)")
        if not all(isinstance(t, int) for t in self._vocab):
            raise ValueError("CIDEr-D: only a df table over integer tokens (word ids) can be saved")
        return DfTable(list(self._df.keys), self._df.counts, self._df.n_documents,
                       np.array(list(self._vocab), dtype=np.int64), self.n, self.sigma)

    @classmethod
    def from_df_table(cls, table: DfTable) -> CiderD:
        """The scorer a `df_table` was taken from (the same scores)."""
        if len(table.keys) != table.n or len(table.counts) != sum(len(k) for k in table.keys):
            raise ValueError(f"CIDEr-D: a df table of {len(table.keys)} orders and {len(table.counts)} counts "
                             f"does not fit n={table.n}")
        scorer = cls(table.n, table.sigma)
        scorer._vocab.update((int(t), i) for i, t in enumerate(table.tokens.tolist()))
        scorer._df = _DocumentFrequency(list(table.keys), table.counts, table.n_documents)
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
        docs = _DocEntries.build(grams, doc_of_sent, len(references))
        if self._df is None:
            usage = np.bincount(group_of, minlength=len(references)).astype(np.float64)  # [R]
            df, n_docs = docs.document_frequency(grams, usage), n_cand  # [n_grams]
        else:
            df, n_docs = self._df.lookup(grams.keys), self._df.n_documents  # [n_grams]
        ref_len = np.log(float(n_docs))
        weight = grams.tf * (ref_len - np.log(np.maximum(1.0, df[grams.gram])))  # [E]
        return self._cosines(grams, docs, weight, lengths, group_of, ref_counts)

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

    def _cosines(self, grams: _NGrams, docs: _DocEntries, weight: np.ndarray, lengths: np.ndarray,
                 group_of: np.ndarray, ref_counts: np.ndarray) -> np.ndarray:
        n, n_cand, n_refsets = self.n, len(group_of), len(ref_counts)
        sent, order = grams.sent, grams.order  # [E], [E]
        norm = np.sqrt(np.bincount(sent * n + order, weights=weight**2, minlength=len(lengths) * n))
        norm = norm.reshape(len(lengths), n)  # [S, n]
        # Join each candidate entry with the entries of the same n-gram in the references of its group.
        cand_entries = np.flatnonzero(sent < n_cand)  # [Ec]
        cand_key = grams.gram[cand_entries] * n_refsets + group_of[sent[cand_entries]]  # [Ec]
        lo = np.searchsorted(docs.key, cand_key, "left")  # [Ec]
        hits = np.searchsorted(docs.key, cand_key, "right") - lo  # [Ec] references sharing the n-gram
        cand_hit = np.repeat(cand_entries, hits)  # [H]
        ref_hit = docs.entry[np.repeat(lo - np.cumsum(hits) + hits, hits) + np.arange(hits.sum())]  # [H]
        # Pairs (candidate, reference of its group), contiguous per candidate.
        pairs_per_cand = ref_counts[group_of]  # [C]
        pair_start = np.cumsum(pairs_per_cand) - pairs_per_cand  # [C]
        ref_start = n_cand + np.cumsum(ref_counts) - ref_counts  # [R] first sentence of each reference set
        pair_cand = np.repeat(np.arange(n_cand), pairs_per_cand)  # [P]
        pair_ref = ref_start[group_of[pair_cand]] + np.arange(len(pair_cand)) - pair_start[pair_cand]  # [P]
        hit_cand = sent[cand_hit]  # [H]
        hit_pair = pair_start[hit_cand] + sent[ref_hit] - ref_start[group_of[hit_cand]]  # [H]
        contrib = np.minimum(weight[cand_hit], weight[ref_hit]) * weight[ref_hit]  # [H] clipped products
        num = np.bincount(hit_pair * n + order[cand_hit], weights=contrib, minlength=len(pair_cand) * n)
        num = num.astype(np.float64)  # an empty `weights` gives int64 counts: divide() below needs floats
        num = num.reshape(len(pair_cand), n)  # [P, n]
        denom = norm[pair_cand] * norm[pair_ref]  # [P, n]
        val = np.divide(num, denom, out=num.copy(), where=denom != 0)  # [P, n]
        bigrams = np.maximum(lengths - 1, 0) if n >= 2 else np.zeros_like(lengths)  # [S] pycocoevalcap "length"
        delta = (bigrams[pair_cand] - bigrams[pair_ref]).astype(np.float64)  # [P]
        val *= (math.e ** (-(delta**2) / (2 * self.sigma**2)))[:, None]  # [P, n] length penalty
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
