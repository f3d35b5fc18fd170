"""Answer vocabularies and soft-score targets: the released vocabularies, the VQA building rule, targets checked
against a brute-force version of the official accuracy, the dense builder, and the consistency errors."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import torch

from clipvil.common.vqa_text import normalize_answer
from clipvil.data import (
    AnswerVocab,
    DataFormatError,
    TargetStats,
    VqaExample,
    build_answer_vocab,
    build_vqa_answer_vocab,
    dense_targets,
    hard_target,
    load_answer_vocab,
    read_gqa,
    read_vqa,
    vqa_soft_target,
    vqa_soft_targets,
)


def _official_accuracy(prediction: str, human: list[str]) -> float:
    """VQA accuracy by its definition: average over each human answer left out of min(1, matches / 3)."""
    accs = [
        min(1.0, sum(h == prediction for j, h in enumerate(human) if j != i) / 3) for i in range(len(human))
    ]
    return sum(accs) / len(accs)


def _vocab_paths(shared_data: Path, task: str) -> tuple[Path, Path]:
    d = shared_data / "clip-vil" / "answer_vocab" / task
    return d / "trainval_ans2label.json", d / "trainval_label2ans.json"


@pytest.mark.parametrize(("task", "size"), [("vqa", 3129), ("gqa", 1842)])
def test_released_vocabularies_load_and_agree(shared_data: Path, task: str, size: int) -> None:
    a2l, l2a = _vocab_paths(shared_data, task)
    vocab = load_answer_vocab(a2l, l2a)
    assert len(vocab) == size
    raw = json.loads(a2l.read_text())
    assert all(vocab.label2ans[label] == ans for ans, label in raw.items())


def test_released_vqa_vocabulary_is_normalised(shared_data: Path) -> None:
    vocab = load_answer_vocab(*_vocab_paths(shared_data, "vqa"))
    assert all(normalize_answer(a) == a for a in vocab.label2ans)  # the rule counts normalised answers
    assert "" in vocab  # answers like "the" normalise to the empty string, frequent enough to be kept


def test_inconsistent_vocabulary_files(write_json) -> None:
    l2a = write_json("label2ans.json", ["yes", "no", "2"])
    with pytest.raises(DataFormatError) as info:
        load_answer_vocab(write_json("ans2label.json", {"yes": 0, "no": 2, "2": 1}), l2a)
    assert str(info.value).endswith("ans2label.json: answer 'no': label 2 is '2' in " + str(l2a))
    with pytest.raises(DataFormatError, match=r"answer '2': label 7 is 'out of range'"):
        load_answer_vocab(write_json("ans2label.json", {"yes": 0, "no": 1, "2": 7}), l2a)
    with pytest.raises(DataFormatError, match=r"2 answers but .* has 3; missing here: \['2'\]"):
        load_answer_vocab(write_json("ans2label.json", {"yes": 0, "no": 1}), l2a)
    with pytest.raises(DataFormatError, match=r"label2ans\.json: label 1: answer must be str, got int 5"):
        load_answer_vocab(write_json("ans2label.json", {}), write_json("label2ans.json", ["yes", 5]))


def test_save_load_roundtrip(tmp_path: Path) -> None:
    vocab = AnswerVocab.from_answers(["yes", "no", "", "2"])
    vocab.save(tmp_path / "a2l.json", tmp_path / "l2a.json")
    assert load_answer_vocab(tmp_path / "a2l.json", tmp_path / "l2a.json") == vocab
    with pytest.raises(ValueError, match="answer 'yes' at labels 0 and 2"):
        AnswerVocab.from_answers(["yes", "no", "yes"])


def _ex(qid: int, mc: str | None, answers: list[str] | None = None) -> VqaExample:
    return VqaExample(qid, 1, "Q?", tuple(answers) if answers else (mc,) * 10 if mc is not None else None, mc)


def test_build_vqa_vocabulary_counts_distinct_questions_of_normalised_answers() -> None:
    examples = [_ex(1, "Two"), _ex(2, "2"), _ex(3, "two."), _ex(4, "yes"), _ex(5, "Yes"), _ex(6, "red")]
    examples.append(_ex(3, "2"))  # the same question again (e.g. train + val overlap) counts once
    vocab = build_vqa_answer_vocab(examples, min_count=2)
    assert vocab.label2ans == ("2", "yes")  # 3 questions, then 2; "red" has 1
    assert build_vqa_answer_vocab(examples, min_count=1).label2ans == ("2", "yes", "red")
    assert len(build_vqa_answer_vocab(examples, min_count=4)) == 0
    with pytest.raises(ValueError, match="question 9 has no answers"):
        build_vqa_answer_vocab([_ex(9, None)])


def test_build_vqa_vocabulary_on_real_sample(shared_data: Path) -> None:
    d = shared_data / "allennlp-models" / "vqav2"
    split = read_vqa(d / "questions.json", d / "annotations.json")
    assert build_vqa_answer_vocab(split.examples, min_count=1).label2ans == ("net", "orange", "pitcher")


def test_build_gqa_vocabulary_from_answers(shared_data: Path) -> None:
    split = read_gqa(shared_data / "allennlp-models" / "gqa" / "question_dir")
    assert build_answer_vocab(q.answer for q in split.questions).label2ans == ("picture", "yes")
    assert build_answer_vocab(["b", "a", "b", "c", "a", "b"], min_count=2).label2ans == ("b", "a")


@pytest.mark.parametrize("matches", range(11))
def test_soft_score_equals_official_accuracy(matches: int) -> None:
    human = ["red"] * matches + [f"other{i}" for i in range(10 - matches)]
    vocab = AnswerVocab.from_answers(["blue", "red"])
    target = vqa_soft_target(human, vocab)
    expected = _official_accuracy("red", human)
    if matches == 0:
        assert target.labels == () and target.scores == ()
    else:
        assert target.labels == (1,)
        assert target.scores[0] == pytest.approx(expected)
    assert round(expected, 6) == [0, 0.3, 0.6, 0.9, 1, 1, 1, 1, 1, 1, 1][matches]  # the documented table


def test_targets_on_real_sample_match_official_accuracy(
    shared_data: Path, caplog: pytest.LogCaptureFixture
) -> None:
    d = shared_data / "allennlp-models" / "vqav2"
    split = read_vqa(d / "questions.json", d / "annotations.json")
    vocab = load_answer_vocab(*_vocab_paths(shared_data, "vqa"))
    with caplog.at_level(logging.WARNING, logger="clipvil.data"):
        targets, stats = vqa_soft_targets(split.examples, vocab)
    for ex, target in zip(split.examples, targets, strict=True):
        human = [normalize_answer(a) for a in ex.answers]
        expected = {vocab.ans2label[a]: _official_accuracy(a, human) for a in set(human) if a in vocab}
        assert dict(zip(target.labels, target.scores, strict=True)) == pytest.approx(expected)
        assert list(target.labels) == sorted(target.labels)
    # "netting" and "mesh" (one human answer each, question 458752000) are not among the 3129 answers
    assert (stats.n_questions, stats.n_human_answers, stats.n_dropped_answers, stats.n_empty_targets) == (
        3,
        30,
        2,
        0,
    )
    assert stats.dropped == {"netting": 1, "mesh": 1}
    assert "2 of 30 human answers not in the vocabulary" in caplog.text


def test_normalisation_merges_answer_variants() -> None:
    vocab = AnswerVocab.from_answers(["2", "yes"])
    stats = TargetStats()
    target = vqa_soft_target(["Two", "2", "two.", "yes", "YES", "no", "no", "no", "no", "no"], vocab, stats)
    assert target.labels == (0, 1) and target.scores == pytest.approx((0.9, 0.6))
    assert (stats.n_dropped_answers, stats.dropped) == (5, {"no": 5})


def test_dense_targets() -> None:
    vocab = AnswerVocab.from_answers(["cat", "dog", "egg", "fox"])  # (not "a": it normalises to "")
    targets = [
        vqa_soft_target(["dog"] * 10, vocab),
        vqa_soft_target(["owl"] * 10, vocab),
        vqa_soft_target(["cat"] * 2 + ["fox"] * 8, vocab),
        hard_target("egg", vocab),
    ]
    dense = dense_targets(targets, len(vocab))
    assert dense.dtype == torch.float32 and dense.shape == (4, 4)
    expected = torch.tensor([[0, 1, 0, 0], [0, 0, 0, 0], [0.6, 0, 0, 1], [0, 0, 1, 0]])
    assert torch.allclose(dense, expected)
    assert dense_targets([], 4).shape == (0, 4)
    with pytest.raises(ValueError, match="label 3 >= n_answers 2"):
        dense_targets(targets, 2)
    assert hard_target("zebra", vocab).labels == ()
