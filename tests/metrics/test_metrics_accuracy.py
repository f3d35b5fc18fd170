"""GQA and SNLI-VE exact-match accuracies, on the real samples."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from clipvil.metrics.accuracy import (
    gqa_accuracy,
    gqa_answers_from_questions,
    snli_ve_accuracy,
    snli_ve_gold_labels,
)


def test_gqa_real_questions(shared_data: Path) -> None:
    root = shared_data / "allennlp-models" / "gqa" / "question_dir"
    questions = {**json.loads((root / "questions0.json").read_text()),
                 **json.loads((root / "questions1.json").read_text())}
    answers, types = gqa_answers_from_questions(questions)
    assert answers == {"202218649": "picture"} and types == {"202218649": "query"}  # 20240871 is not balanced
    all_answers, all_types = gqa_answers_from_questions(questions, balanced_only=False)
    assert all_answers == {"202218649": "picture", "20240871": "yes"} and all_types["20240871"] == "logical"
    # A prediction for the unbalanced question is ignored (the official evaluation scores balanced ones).
    assert gqa_accuracy({"202218649": "picture", "20240871": "no"}, answers, types) == {
        "accuracy": 100.0, "n": 1.0, "open": 100.0,
    }
    scores = gqa_accuracy({"202218649": "picture", "20240871": "no"}, all_answers, all_types)
    assert scores == {"accuracy": 50.0, "n": 2.0, "open": 100.0, "binary": 0.0}


def test_gqa_is_exact_string_match() -> None:
    answers = {"1": "picture", "2": "yes", "3": "white"}
    assert gqa_accuracy({"1": "Picture", "2": "yes ", "3": "white"}, answers)["accuracy"] == pytest.approx(100 / 3)
    with pytest.raises(ValueError, match=r"no prediction for 1 question\(s\) \(e.g. '3'\)"):
        gqa_accuracy({"1": "picture", "2": "yes"}, answers)
    with pytest.raises(ValueError, match="no structural type"):
        gqa_accuracy(answers, answers, {"1": "query"})


def test_snli_ve_real_pairs(shared_data: Path) -> None:
    path = shared_data / "allennlp-models" / "visual_entailment" / "sample_pairs.jsonl"
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    gold = snli_ve_gold_labels(rows)
    assert len(gold) == 16  # 6 entailment, 6 neutral, 4 contradiction
    perfect = snli_ve_accuracy(gold, gold)
    assert perfect == {"accuracy": 100.0, "per_label": {"entailment": 100.0, "neutral": 100.0, "contradiction": 100.0},
                       "n": 16}
    always_neutral = snli_ve_accuracy({k: "neutral" for k in gold}, gold)
    assert always_neutral["accuracy"] == pytest.approx(100 * 6 / 16)
    assert always_neutral["per_label"] == {"entailment": 0.0, "neutral": 100.0, "contradiction": 0.0}


def test_snli_ve_bad_labels_are_named() -> None:
    with pytest.raises(ValueError, match=r"prediction for pair 'p1': 'yes' is not one of"):
        snli_ve_accuracy({"p1": "yes"}, {"p1": "neutral"})
    with pytest.raises(ValueError, match=r"unknown pair"):
        snli_ve_accuracy({"p1": "neutral", "p2": "neutral"}, {"p1": "neutral"})
    with pytest.raises(ValueError, match="row 1: duplicate pairID a"):
        snli_ve_gold_labels([{"pairID": "a", "gold_label": "neutral"}, {"pairID": "a", "gold_label": "neutral"}])
