"""VQA accuracy: the fast implementation against a plain port of the official loop, and on the real samples."""

from __future__ import annotations

import importlib.util
import itertools
import json
import random
from pathlib import Path
from types import ModuleType

import pytest

from clipvil.common.vqa_text import vqa_soft_score
from clipvil.metrics.vqa import (
    VqaReference,
    _official_terms_sum,
    _order_free,
    official_round,
    predictions_from_results,
    references_from_annotations,
    vqa_accuracy,
)

REPO = Path(__file__).resolve().parents[2]

# Answers that exercise every rule of the official normalisation: case, punctuation deleted vs spaced
# out, periods (sentence vs decimal), digit commas, number words, articles, contractions, whitespace.
ANSWER_POOL = [
    "yes", "Yes", "yes.", " yes ", "yes!", "no", "No", "nope", "2", "two", "Two", "2.", "two.", "none", "0",
    "zero", "1.5", "1. 5", "3,000", "3000", "3, 000", "a dog", "the dog", "dog", "dogs", "A Dog", "an apple",
    "apple", "red, white", "red white", "red,white", "don't", "dont", "isnt", "isn't", "t-shirt", "t shirt",
    "tshirt", "ice-cream", "ice cream", "left/right", "left right", "10:30", "1/2", "one half", "?", "",
    "it's 2", "its two", "man's", "mans", "mr. smith", "mr smith", "a", "the", "(yes)", "yes (maybe)",
    "up\nstairs", "up stairs", "tab\there", "ten", "10", "u.s.a.", "usa", "wii", "WII", "black & white",
]
QUESTION_TYPES = ["what color is the", "how many", "is this", "what is", "none of the above"]
ANSWER_TYPES = ["yes/no", "number", "other"]


def _load_official_port() -> ModuleType:
    """The single copy of the official-loop port lives beside the benchmark that times it."""
    path = REPO / "benchmarks" / "official_vqa_eval.py"
    spec = importlib.util.spec_from_file_location("official_vqa_eval", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


OFFICIAL = _load_official_port()


def _random_dataset(rng: random.Random, n_questions: int) -> tuple[dict[int, VqaReference], dict[int, str]]:
    refs: dict[int, VqaReference] = {}
    preds: dict[int, str] = {}
    for qid in rng.sample(range(10**6), n_questions):
        kind = rng.random()
        if kind < 0.25:  # unanimous: the official code normalises nothing
            answers = [rng.choice(ANSWER_POOL)] * 10
        elif kind < 0.6:  # few distinct answers: many matches, 2- and 3-match questions included
            few = rng.sample(ANSWER_POOL, rng.randint(2, 3))
            answers = [rng.choice(few) for _ in range(10)]
        else:
            answers = [rng.choice(ANSWER_POOL) for _ in range(10)]
        pred = rng.choice(answers) if rng.random() < 0.6 else rng.choice(ANSWER_POOL)
        refs[qid] = VqaReference(tuple(answers), rng.choice(QUESTION_TYPES), rng.choice(ANSWER_TYPES))
        preds[qid] = pred
    return refs, preds


def _official_inputs(refs: dict[int, VqaReference], preds: dict[int, str]) -> tuple[dict, dict]:
    gts = {
        qid: {
            "answers": [{"answer": a, "answer_confidence": "yes", "answer_id": i + 1} for i, a in enumerate(r.answers)],
            "question_type": r.question_type,
            "answer_type": r.answer_type,
        }
        for qid, r in refs.items()
    }
    return gts, {qid: {"answer": p} for qid, p in preds.items()}


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_fast_equals_official_port_on_random_questions(seed: int) -> None:
    refs, preds = _random_dataset(random.Random(seed), 1500)
    official = OFFICIAL.official_vqa_eval(*_official_inputs(refs, preds))
    ours = vqa_accuracy(preds, refs)
    # Bit-for-bit: same floats per question, per type and overall, and the same official rounding.
    assert ours.per_question == official["unrounded"]["perQuestion"]
    assert ours.overall == official["unrounded"]["overall"]
    assert ours.per_answer_type == official["unrounded"]["perAnswerType"]
    assert ours.per_question_type == official["unrounded"]["perQuestionType"]
    assert ours.overall_rounded == official["overall"]
    assert ours.per_answer_type_rounded == official["perAnswerType"]
    assert ours.per_question_type_rounded == official["perQuestionType"]
    # The random set is not degenerate: partial credit, zeros and full marks all occur.
    values = set(ours.per_question.values())
    assert 0.0 in values and 100.0 in values and len(values) >= 5


def test_unanimous_answers_are_not_normalised() -> None:
    refs = {1: VqaReference(("yes.",) * 10, "is this", "yes/no"), 2: VqaReference(("yes.",) * 9 + ("Yes",))}
    # Q1 is unanimous: "yes" != "yes." (no normalisation). Q2 is not: both normalise to "yes".
    scores = vqa_accuracy({1: "yes", 2: "yes"}, refs)
    assert scores.per_question == {1: 0.0, 2: 100.0}
    assert scores.per_answer_type == {"yes/no": 0.0}
    assert scores.per_question_type == {"is this": 0.0}


def test_order_free_cases_are_really_order_free_and_match_the_closed_form() -> None:
    for n in range(1, 13):
        for m in range(n + 1):
            sums = {
                _official_terms_sum(n, [i in hits for i in range(n)]) for hits in itertools.combinations(range(n), m)
            }
            if _order_free(n, m):
                assert len(sums) == 1, (n, m)
            assert all(abs(s - vqa_soft_score(m, n)) < 1e-12 for s in sums)
    assert not _order_free(10, 2) and not _order_free(10, 3)  # the two orders really differ there


def test_real_vqav2_samples(shared_data: Path) -> None:
    root = shared_data / "allennlp-models" / "vqav2"
    annotations = json.loads((root / "annotations.json").read_text())["annotations"]
    questions = json.loads((root / "questions.json").read_text())["questions"]
    refs = references_from_annotations(annotations)
    assert sorted(refs) == sorted(q["question_id"] for q in questions)
    # Q0 answers: net x6, netting, mesh, pitcher, orange. Q1: pitcher x9, catcher. Q2: orange x10.
    cases = {
        # prediction per question -> expected percent, by the official rule min(1, matches/3) averaged
        # over leave-one-out: >= 4 matches -> 100; 1 match -> 9/10 * 1/3 = 30; 0 -> 0.
        ("net", "pitcher", "orange"): (100.0, 100.0, 100.0),
        ("Netting.", "the Pitcher", " orange\n"): (30.0, 100.0, 100.0),  # normalised; Q2 only stripped
        ("mesh", "catcher", "Orange"): (30.0, 30.0, 0.0),  # Q2 is unanimous: "Orange" is not normalised
        ("nets", "a catcher", "orange."): (0.0, 30.0, 0.0),
    }
    qids = [a["question_id"] for a in annotations]
    for answers, expected in cases.items():
        scores = vqa_accuracy(dict(zip(qids, answers)), refs)
        for qid, want in zip(qids, expected):
            assert scores.per_question[qid] == pytest.approx(want, abs=1e-9), (answers, qid)
        assert scores.overall == pytest.approx(sum(expected) / 3, abs=1e-9)
        # The annotations carry no types: the per-type tables stay empty rather than invented.
        assert scores.per_answer_type == {} and scores.per_question_type == {}


def test_missing_and_unknown_predictions_are_named() -> None:
    refs = {7: VqaReference(("a",) * 10), 8: VqaReference(("b",) * 10)}
    with pytest.raises(ValueError, match=r"no prediction for 1 question.*\b8\b"):
        vqa_accuracy({7: "a"}, refs)
    with pytest.raises(ValueError, match=r"unknown question.*\b9\b"):
        vqa_accuracy({7: "a", 8: "b", 9: "c"}, refs)
    with pytest.raises(ValueError, match=r"prediction ids are \['str'\] but reference ids are \['int'\]"):
        vqa_accuracy({"7": "a", "8": "b"}, refs)
    with pytest.raises(ValueError, match=r"question 8: expected a string"):
        vqa_accuracy({7: "a", 8: None}, refs)  # type: ignore[dict-item]


def test_results_and_annotations_parsing_errors() -> None:
    assert predictions_from_results([{"question_id": 3, "answer": "x"}]) == {3: "x"}
    with pytest.raises(ValueError, match="result 1: duplicate question_id 3"):
        predictions_from_results([{"question_id": 3, "answer": "x"}, {"question_id": 3, "answer": "y"}])
    with pytest.raises(ValueError, match=r"annotation 0 \(question 5\)"):
        references_from_annotations([{"question_id": 5, "answers": []}])
    with pytest.raises(ValueError, match="answers must be a non-empty sequence of strings"):
        VqaReference(("yes", 3))  # type: ignore[arg-type]


def test_official_round_is_python2_round() -> None:
    assert official_round(0.125) == 0.13  # exact tie in binary: Python 2 rounds away from zero
    assert official_round(2.675) == 2.67  # 2.675 is 2.67499999... in binary
    assert official_round(33.333333) == 33.33

