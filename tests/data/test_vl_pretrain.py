"""CLIP-ViL_p pre-training inputs: MLM masking, ITM pairs, QA targets over LXMERT's real answer table."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from clipvil.data.lxmert import load_lxmert_answer_table, read_lxmert
from clipvil.data.tokenizers import BertTextTokenizer, default_bert_dir
from clipvil.families.vl.pretrain_data import (
    IGNORE_INDEX,
    MaskingSpec,
    itm_pairs,
    mask_tokens,
    pretrain_targets,
    qa_target,
)

SPECIALS = frozenset({0, 100, 101, 102, 103})  # BERT uncased: [PAD] [UNK] [CLS] [SEP] [MASK]
SPEC = MaskingSpec(vocab_size=30522, mask_id=103, special_ids=SPECIALS)


def _sentences(rng: np.random.Generator, n: int, length: int = 20) -> np.ndarray:
    """[n, length] BERT-like rows: [CLS] words [SEP] [PAD]..., 3 to length-2 words each."""
    ids = np.zeros((n, length), dtype=np.int64)
    for i in range(n):
        k = int(rng.integers(3, length - 1))
        ids[i, 0], ids[i, k + 1] = 101, 102
        ids[i, 1 : k + 1] = rng.integers(1000, 30522, size=k)
    return ids


# ----------------------------------------------------------------------------------------------- MLM
def test_masking_proportions_on_a_large_sample() -> None:
    rng = np.random.default_rng(0)
    ids = _sentences(rng, 20000)
    out, labels = mask_tokens(ids, SPEC, np.random.default_rng(1))
    regular = ~np.isin(ids, list(SPECIALS))
    chosen = labels != IGNORE_INDEX
    n_regular, n_chosen = int(regular.sum()), int(chosen.sum())
    assert abs(n_chosen / n_regular - 0.15) < 0.003  # ~200k regular tokens: 3 sigma is ~0.0024
    became_mask = (out == 103) & chosen
    changed_to_other = (out != ids) & (out != 103) & chosen
    unchanged = (out == ids) & chosen
    assert abs(became_mask.sum() / n_chosen - 0.8) < 0.01
    assert abs(changed_to_other.sum() / n_chosen - 0.1) < 0.008
    assert abs(unchanged.sum() / n_chosen - 0.1) < 0.008  # a random draw equal to the original is ~1/30000


def test_specials_never_masked_and_labels_exactly_where_chosen() -> None:
    rng = np.random.default_rng(2)
    ids = _sentences(rng, 3000)
    out, labels = mask_tokens(ids, MaskingSpec(30522, 103, SPECIALS, rate=0.5), np.random.default_rng(3))
    special = np.isin(ids, list(SPECIALS))
    assert np.array_equal(out[special], ids[special])  # [CLS] [SEP] [PAD] kept in place
    assert (labels[special] == IGNORE_INDEX).all()
    chosen = labels != IGNORE_INDEX
    assert np.array_equal(labels[chosen], ids[chosen])  # the label is the original token
    assert np.array_equal(out[~chosen], ids[~chosen])  # nothing changes where there is no label
    replaced = chosen & (out != ids) & (out != 103)
    assert replaced.sum() > 500
    assert not np.isin(out[replaced], list(SPECIALS)).any()  # random tokens are never special
    assert out.min() >= 0 and out.max() < 30522


def test_rate_one_chooses_every_regular_token_and_draws_are_deterministic() -> None:
    ids = np.array([[101, 2000, 2001, 2002, 102, 0, 0]])
    _, labels = mask_tokens(ids, MaskingSpec(30522, 103, SPECIALS, rate=1.0), np.random.default_rng(0))
    assert labels.tolist() == [[-100, 2000, 2001, 2002, -100, -100, -100]]
    a = mask_tokens(_sentences(np.random.default_rng(5), 50), SPEC, np.random.default_rng(9))
    b = mask_tokens(_sentences(np.random.default_rng(5), 50), SPEC, np.random.default_rng(9))
    assert all(np.array_equal(x, y) for x, y in zip(a, b))


def test_random_replacement_covers_the_regular_vocabulary_uniformly() -> None:
    # tiny vocabulary: 8 ids, specials 0, 3, 7 -> random tokens are uniform over {1, 2, 4, 5, 6}
    spec = MaskingSpec(8, 3, frozenset({0, 3, 7}), rate=1.0, mask_frac=0.0, random_frac=1.0)
    out, _ = mask_tokens(np.full((1, 50000), 1), spec, np.random.default_rng(0))
    counts = Counter(out.ravel().tolist())
    assert set(counts) == {1, 2, 4, 5, 6}
    assert all(abs(c / 50000 - 0.2) < 0.01 for c in counts.values())


def test_spec_from_the_real_bert_vocabulary() -> None:
    vocab = (default_bert_dir() / "vocab.txt").read_text(encoding="utf-8").splitlines()
    spec = MaskingSpec.from_tokenizer(BertTextTokenizer())
    assert spec.vocab_size == len(vocab)
    assert vocab[spec.mask_id] == "[MASK]"
    assert {vocab[i] for i in spec.special_ids} == {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"}


def test_bad_masking_inputs() -> None:
    with pytest.raises(ValueError, match="token ids must lie"):
        mask_tokens([[101, 40000]], SPEC, np.random.default_rng(0))
    with pytest.raises(ValueError, match="must be one of the special ids"):
        MaskingSpec(100, 5, frozenset({0}))
    with pytest.raises(ValueError, match="mask_frac"):
        MaskingSpec(100, 0, frozenset({0}), mask_frac=0.9, random_frac=0.2)


# ----------------------------------------------------------------------------------------------- ITM
def test_itm_never_pairs_an_image_with_itself_and_is_balanced() -> None:
    rng = np.random.default_rng(0)
    image_ids = [f"COCO_{i // 5:06d}" for i in range(1001)]  # 5 captions an image, as COCO
    pairs = itm_pairs(image_ids, rng)
    neg = pairs.matched == 0
    assert int(neg.sum()) == 501  # round(1001 / 2): exact, not a coin per item
    images = np.array(image_ids)
    assert (images[pairs.text_index[neg]] != images[neg]).all()  # another image's sentence
    assert np.array_equal(pairs.text_index[~neg], np.flatnonzero(~neg))  # matched: own sentence
    # partners are spread over the dataset, not a fixed neighbour
    assert len(set(pairs.text_index[neg].tolist())) > 300


def test_itm_with_a_dominant_image_and_degenerate_batches() -> None:
    image_ids = ["a"] * 97 + ["b", "c", "d"]  # 97 % of sentences on one image: redraws hit it often
    for seed in range(5):
        pairs = itm_pairs(image_ids, np.random.default_rng(seed))
        neg = np.flatnonzero(pairs.matched == 0)
        assert len(neg) == 50
        assert all(image_ids[pairs.text_index[i]] != image_ids[i] for i in neg)
    with pytest.raises(ValueError, match="needs two images"):
        itm_pairs(["x", "x", "x"], np.random.default_rng(0))
    assert itm_pairs(["x", "x"], np.random.default_rng(0), mismatch_rate=0.0).matched.tolist() == [1, 1]
    a = itm_pairs(image_ids, np.random.default_rng(7))
    b = itm_pairs(image_ids, np.random.default_rng(7))
    assert np.array_equal(a.text_index, b.text_index)


# ----------------------------------------------------------------------------------------------- QA
def test_qa_target_samples_in_proportion_to_scores() -> None:
    rng = np.random.default_rng(0)
    draws = Counter(qa_target({4: 1.0, 9: 0.3}, True, rng) for _ in range(13000))
    assert set(draws) == {4, 9}
    assert abs(draws[9] / 13000 - 0.3 / 1.3) < 0.015
    assert qa_target({4: 1.0, 9: 0.3}, False, rng) == IGNORE_INDEX  # unmatched pair: no QA loss
    assert qa_target(None, True, rng) == IGNORE_INDEX  # a caption
    assert qa_target({}, True, rng) == IGNORE_INDEX  # every answer pruned from the table
    assert qa_target({5: 0.0}, True, rng) == IGNORE_INDEX
    assert qa_target({5: 0.6}, True, rng) == 5


def test_pretrain_targets_over_real_answer_table(shared_data: Path, tmp_path: Path) -> None:
    table = load_lxmert_answer_table(shared_data / "clip-vil/answer_vocab/lxmert/all_ans.json")
    assert len(table) == 9500
    entries = [
        {
            "img_id": "COCO_val2014_000000000042",
            "sentf": {"mscoco": ["A dog on a couch."], "vqa": ["What animal is this?"]},
            "labelf": {"vqa": [{"dog": 1.0}]},
        },
        {
            "img_id": "COCO_val2014_000000000073",
            "sentf": {"vqa": ["What color is the bus?", "How many?"]},
            "labelf": {"vqa": [{"Red": 1.0}, {"two": 0.9, "3": 0.3}]},
        },
    ]
    path = tmp_path / "mscoco_minival.json"
    path.write_text(json.dumps(entries), encoding="utf-8")
    data = read_lxmert(path, table)
    ids = _sentences(np.random.default_rng(0), len(data.sentences), length=12)
    att = (ids != 0).astype(np.int64)
    images = [s.image_id for s in data.sentences]
    labels = [s.labels for s in data.sentences]
    # every answer of this file is in the table, under its converted spelling
    assert labels[1] == {table.ans2id["dog"]: 1.0} and labels[2] == {table.ans2id["red"]: 1.0}
    assert labels[3] == {table.ans2id["2"]: 0.9, table.ans2id["3"]: 0.3}
    seen_qa: set[int] = set()
    for seed in range(40):
        t = pretrain_targets(ids, att, images, labels, SPEC, np.random.default_rng(seed))
        assert int((t.itm_labels == 0).sum()) == 2
        for i in range(len(ids)):
            j = int(t.text_index[i])
            assert (images[j] != images[i]) == (t.itm_labels[i] == 0)
            np.testing.assert_array_equal(t.attention_mask[i], att[j])
            chosen = t.mlm_labels[i] != IGNORE_INDEX
            np.testing.assert_array_equal(t.mlm_labels[i][chosen], ids[j][chosen])  # the shown sentence
            if t.itm_labels[i] == 0 or labels[i] is None:
                assert t.qa_labels[i] == IGNORE_INDEX
            else:
                assert int(t.qa_labels[i]) in labels[i]
                seen_qa.add(int(t.qa_labels[i]))
    assert {table.ans2id["dog"], table.ans2id["red"], table.ans2id["2"], table.ans2id["3"]} <= seen_qa
    with pytest.raises(ValueError, match="do not describe one batch"):
        pretrain_targets(ids, att, images[:2], labels, SPEC, np.random.default_rng(0))
