"""Fast CIDEr-D against pycocoevalcap's Cider on real Karpathy-test references."""

from __future__ import annotations

import json
import re
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
from pycocoevalcap.cider.cider import Cider

from clipvil.metrics.cider import CiderD, _sort_by_key_then_sentence, cider_d

TOL = 1e-9


def _karpathy_captions(shared_data: Path) -> dict[int, list[str]]:
    data = json.loads((shared_data / "coco-caption" / "derived" / "coco_karpathy_test_gt.json").read_text())
    captions: dict[int, list[str]] = defaultdict(list)
    for ann in data["annotations"]:
        captions[ann["image_id"]].append(ann["caption"])
    return dict(captions)


def _simple_tokens(caption: str) -> str:
    """Lower-cased words: any tokenisation works here, as long as both scorers get the same strings."""
    return " ".join(re.findall(r"[a-z0-9]+(?:'[a-z]+)?", caption.lower()))


def _held_out(captions: dict[int, list[str]], n_images: int) -> tuple[dict[int, str], dict[int, list[str]]]:
    """The last caption of each image (the codalab held-out human caption) against the others."""
    ids = list(captions)[:n_images]
    preds = {i: _simple_tokens(captions[i][-1]) for i in ids}
    refs = {i: [_simple_tokens(c) for c in captions[i][:-1]] for i in ids}
    return preds, refs


def _pycoco(preds: dict, refs: dict) -> tuple[float, np.ndarray]:
    score, scores = Cider().compute_score(refs, {k: [v] for k, v in preds.items()})
    return float(score), np.asarray(scores)


def test_corpus_scores_match_pycocoevalcap_on_real_references(shared_data: Path) -> None:
    preds, refs = _held_out(_karpathy_captions(shared_data), 600)
    want, want_each = _pycoco(preds, refs)
    got, got_each = cider_d(preds, refs)
    assert abs(got - want) < TOL
    np.testing.assert_allclose([got_each[i] for i in refs], want_each, rtol=0, atol=TOL)
    assert 0.3 < want < 3.0 and np.ptp(want_each) > 1.0  # a real spread of scores, not a degenerate case


def test_groups_and_edge_cases_match_pycocoevalcap(shared_data: Path) -> None:
    captions = _karpathy_captions(shared_data)
    ids = list(captions)[:30]
    ref_sets = [[_simple_tokens(c) for c in captions[i][:-1]] for i in ids]
    first = ref_sets[0][0]
    candidates = [
        first,  # equal to one reference
        "",  # empty (e.g. a sample that ended at once)
        "a",  # no bigrams: length 0
        "a a a a a a a a",  # repeated n-grams: tf > 1 and clipping
        _simple_tokens(captions[ids[1]][-1]),
        "zebra unicorn xylophone",  # n-grams in no reference
    ]
    groups = [0, 0, 1, 1, 1, 2]
    extra = list(range(3, 30))  # more candidates so that df and log(N) are not trivial
    candidates += [_simple_tokens(captions[ids[g]][-1]) for g in extra]
    groups += extra
    got = CiderD().score(candidates, ref_sets, groups)
    # pycocoevalcap scores one candidate per key: expand the groups into one reference copy per candidate.
    _, want = _pycoco(dict(enumerate(candidates)), {k: ref_sets[g] for k, g in enumerate(groups)})
    np.testing.assert_allclose(got, want, rtol=0, atol=TOL)
    assert got[1] == 0.0 and got[0] > got[4] > 0  # empty scores 0; a reference copy beats another caption


def test_cached_document_frequency_equals_pycocoevalcap_over_the_whole_corpus(shared_data: Path) -> None:
    # With df from a corpus of 400 images, scoring 50 of them equals pycocoevalcap scoring all 400
    # (pycocoevalcap's df and log(N) come from the set it scores) and keeping those 50.
    preds, refs = _held_out(_karpathy_captions(shared_data), 400)
    _, want_all = _pycoco(preds, refs)
    scorer = CiderD.from_corpus(list(refs.values()))
    subset = list(refs)[100:150]
    got = scorer.score([preds[i] for i in subset], [refs[i] for i in subset])
    np.testing.assert_allclose(got, want_all[100:150], rtol=0, atol=TOL)
    # Many samples per image share one reference set (the SCST batch layout), including unseen words.
    novel = "a brand new unseen zebra phrase on the table"
    samples = [preds[i] for i in subset for _ in range(3)] + [novel]
    batch = scorer.score(samples, [refs[i] for i in subset], list(np.repeat(np.arange(50), 3)) + [0])
    np.testing.assert_allclose(batch[:-1], np.repeat(got, 3), rtol=0, atol=TOL)
    _, want_novel = _pycoco({**preds, subset[0]: novel}, refs)  # df depends on the references only
    assert abs(batch[-1] - want_novel[100]) < TOL


def test_token_sequences_equal_strings(shared_data: Path) -> None:
    preds, refs = _held_out(_karpathy_captions(shared_data), 50)
    ids = list(refs)
    as_text = CiderD().score([preds[i] for i in ids], [refs[i] for i in ids])
    vocab: dict[str, int] = {}

    def to_ids(sentence: str) -> list[int]:
        return [vocab.setdefault(w, len(vocab)) for w in sentence.split()]

    as_ids = CiderD().score([to_ids(preds[i]) for i in ids], [[to_ids(r) for r in refs[i]] for i in ids])
    np.testing.assert_array_equal(as_text, as_ids)


def test_both_sort_paths_order_by_key_then_sentence() -> None:
    rng = np.random.default_rng(0)
    key = rng.integers(0, 50, 500)
    sent = np.sort(rng.integers(0, 40, 500))
    for n_sent in (40, 2**62):  # the second forces the overflow-safe stable path
        perm = _sort_by_key_then_sentence(key, sent, n_sent)
        pairs = list(zip(key[perm].tolist(), sent[perm].tolist()))
        assert pairs == sorted(pairs)


def test_bad_inputs_are_named() -> None:
    with pytest.raises(ValueError, match="reference set 1 is empty"):
        CiderD().score(["a b"], [["a b"], []], [1])
    with pytest.raises(ValueError, match="groups must index the 1 reference sets"):
        CiderD().score(["a b"], [["a b"]], [3])
    with pytest.raises(ValueError, match="2 candidates but 1 reference sets"):
        CiderD().score(["a", "b"], [["a b"]])
    with pytest.raises(ValueError, match=r"ids differ: 1 without prediction \(e.g. \[2\]\)"):
        cider_d({1: "a"}, {1: ["a"], 2: ["b"]})


@pytest.mark.slow
def test_all_5000_karpathy_test_images_with_ptb_tokens_match_pycocoevalcap(shared_data: Path) -> None:
    from clipvil.metrics.caption import ptb_tokenize

    captions = _karpathy_captions(shared_data)
    assert len(captions) == 5000
    tokens = ptb_tokenize(captions)
    preds = {i: caps[-1] for i, caps in tokens.items()}
    refs = {i: caps[:-1] for i, caps in tokens.items()}
    want, want_each = _pycoco(preds, refs)
    got, got_each = cider_d(preds, refs)
    assert abs(got - want) < TOL
    np.testing.assert_allclose([got_each[i] for i in refs], want_each, rtol=0, atol=TOL)


def test_no_candidate_ngram_in_any_reference_scores_zero() -> None:
    """A batch of garbage SCST samples: no n-gram matches, bincount of empty weights is int64 — still 0.0."""
    scorer = CiderD.from_corpus([["a red circle", "the red circle"], ["a blue star"]])
    scores = scorer.score(["zzz qqq", "xxx"], [["a red circle"], ["a blue star"]])
    assert scores.dtype == np.float64 and scores.tolist() == [0.0, 0.0]


def test_a_saved_df_table_scores_like_the_corpus_it_came_from(shared_data: Path) -> None:
    # word ids (the SCST form); the reloaded scorer gives pycocoevalcap's whole-corpus scores too
    preds, refs = _held_out(_karpathy_captions(shared_data), 200)
    _, want_all = _pycoco(preds, refs)
    words: dict[str, int] = {}

    def ids(sentence: str) -> list[int]:
        return [words.setdefault(w, len(words)) for w in sentence.split()]

    corpus = [[ids(r) for r in refs[i]] for i in refs]
    table = CiderD.from_corpus(corpus).df_table()
    reloaded = CiderD.from_df_table(type(table)([k.copy() for k in table.keys], table.counts.copy(),
                                                table.n_documents, table.tokens.copy(), table.n, table.sigma))
    subset = list(refs)[20:60]
    got = reloaded.score([ids(preds[i]) for i in subset], [corpus[list(refs).index(i)] for i in subset])
    np.testing.assert_allclose(got, want_all[20:60], rtol=0, atol=TOL)
    with pytest.raises(ValueError, match="no corpus document frequencies"):
        CiderD().df_table()
    with pytest.raises(ValueError, match="integer tokens"):
        CiderD.from_corpus([["a red circle"]]).df_table()
