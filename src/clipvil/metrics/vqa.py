"""VQA v2 accuracy, exactly as the official evaluation (GT-Vision-Lab/VQA, vqaEval.py) computes it, but fast.

The official loop, per question: strip whitespace of the 10 human answers and the prediction; only when the
human answers are not all identical, normalise them and the prediction (punctuation, number words,
articles, contractions: `clipvil.common.vqa_text`); then average, over the 10 answers left out in turn,
min(1, matches among the other 9 / 3). Overall, per answer type and per question type accuracies are the
plain means in percent, rounded to 2 decimals.

What makes this fast (see benchmarks/metrics.py): every distinct string is stripped and normalised once
(a cache), matches are a list count, and the leave-one-out average is a table over (answers, matches).
The result is bit-for-bit the official one: where the float sum of the 10 leave-one-out terms depends on
which answers matched (2 or 3 matches), the terms are added in the official order.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from clipvil.common.vqa_text import normalize_answer, strip_whitespace
from clipvil.metrics._checks import check_ids, check_text

_METRIC = "vqa_accuracy"


@dataclass(frozen=True)
class VqaReference:
    """The human answers of one question (10 in VQA v2) and its types (None when the annotation has none)."""

    answers: tuple[str, ...]
    question_type: str | None = None
    answer_type: str | None = None

    def __post_init__(self) -> None:
        answers = tuple(self.answers)
        if not answers or not all(isinstance(a, str) for a in answers):
            raise ValueError(f"VqaReference: answers must be a non-empty sequence of strings, got {self.answers!r}")
        object.__setattr__(self, "answers", answers)


@dataclass(frozen=True)
class VqaScores:
    """Accuracies in percent (0-100). `*_rounded` are the official numbers (2 decimals, half away from zero).

    `per_question` maps each question id to its unrounded accuracy in percent. Questions without a type are
    left out of the per-type tables.
    """

    overall: float
    per_answer_type: dict[str, float]
    per_question_type: dict[str, float]
    per_question: dict[Any, float] = field(repr=False)
    overall_rounded: float
    per_answer_type_rounded: dict[str, float]
    per_question_type_rounded: dict[str, float]

    def to_dict(self, include_per_question: bool = False) -> dict[str, Any]:
        """JSON-serialisable summary, keys as in the official `accuracy` dict plus the unrounded values."""
        out: dict[str, Any] = {
            "overall": self.overall_rounded,
            "perAnswerType": self.per_answer_type_rounded,
            "perQuestionType": self.per_question_type_rounded,
            "unrounded": {
                "overall": self.overall,
                "perAnswerType": self.per_answer_type,
                "perQuestionType": self.per_question_type,
            },
            "n_questions": len(self.per_question),
        }
        if include_per_question:
            out["perQuestion"] = {str(k): v for k, v in self.per_question.items()}
        return out


def official_round(value: float, ndigits: int = 2) -> float:
    """Python 2's round() (the official code is Python 2): the exact binary value, ties away from zero."""
    quantum = Decimal(1).scaleb(-ndigits)
    return float(Decimal(value).quantize(quantum, rounding=ROUND_HALF_UP))


def references_from_annotations(annotations: Sequence[Mapping[str, Any]]) -> dict[int, VqaReference]:
    """VqaReferences from the `annotations` list of an official annotation file (plain dicts).

    Each annotation needs `question_id` and `answers` (a list of {"answer": str, ...}); `question_type` and
    `answer_type` are optional. Errors name the annotation.
    """
    refs: dict[int, VqaReference] = {}
    for index, ann in enumerate(annotations):
        qid = ann.get("question_id") if isinstance(ann, Mapping) else None
        where = f"{_METRIC}: annotation {index} (question {qid})"
        if qid is None or not isinstance(ann.get("answers"), list) or not ann["answers"]:
            raise ValueError(f"{where}: needs a question_id and a non-empty answers list")
        if qid in refs:
            raise ValueError(f"{where}: duplicate question_id")
        answers = []
        for ans in ann["answers"]:
            if not isinstance(ans, Mapping) or not isinstance(ans.get("answer"), str):
                raise ValueError(f"{where}: each answer must be an object with a string 'answer'")
            answers.append(ans["answer"])
        refs[qid] = VqaReference(tuple(answers), ann.get("question_type"), ann.get("answer_type"))
    return refs


def predictions_from_results(results: Sequence[Mapping[str, Any]]) -> dict[int, str]:
    """{question_id: answer} from an official results list [{"question_id": int, "answer": str}]."""
    preds: dict[int, str] = {}
    for index, res in enumerate(results):
        if not isinstance(res, Mapping) or "question_id" not in res or "answer" not in res:
            raise ValueError(f"{_METRIC}: result {index}: needs 'question_id' and 'answer'")
        qid = res["question_id"]
        if qid in preds:
            raise ValueError(f"{_METRIC}: result {index}: duplicate question_id {qid!r}")
        preds[qid] = check_text(_METRIC, "prediction for question", qid, res["answer"])
    return preds


class _StripCache(dict[str, str]):
    """Whitespace-stripped form of each distinct string, computed once (dict lookups stay in C)."""

    def __missing__(self, text: str) -> str:
        out = self[text] = strip_whitespace(text)
        return out


class _NormaliseCache(dict[str, str]):
    """The official normalisation of each distinct (stripped) string, computed once."""

    def __missing__(self, text: str) -> str:
        out = self[text] = normalize_answer(text)
        return out


def _official_terms_sum(n: int, matched: Sequence[bool]) -> float:
    """The official per-question value: leave-one-out terms summed in answer order, divided by n."""
    m = sum(matched)
    return float(sum(min(1, float(m - hit) / 3) for hit in matched)) / n


def _order_free(n: int, m: int) -> bool:
    """True when every order of the official sum gives the same float: at most one distinct non-zero term.

    The m matching answers contribute min(1, (m-1)/3) each, the n-m others min(1, m/3); adding 0.0 never
    changes a float sum, so only two different non-zero terms (2 or 3 matches) make the order matter.
    """
    terms = [(min(1.0, (m - 1) / 3), m), (min(1.0, m / 3), n - m)]
    return len({value for value, count in terms if count and value != 0.0}) <= 1


class _ScoreTable:
    """Per-question accuracy (fraction) by (n answers, matches), bit-exact with the official summation."""

    def __init__(self) -> None:
        self.fixed: dict[tuple[int, int], float] = {}  # (n, m) whose official sum does not depend on order
        self._ordered: dict[tuple[bool, ...], float] = {}

    def slow_score(self, gts: Sequence[str], pred: str) -> float:
        """Fills `fixed` for (n, m), or sums the terms in answer order where the order matters."""
        n, m = len(gts), gts.count(pred)
        if _order_free(n, m):
            value = self.fixed[(n, m)] = _official_terms_sum(n, [True] * m + [False] * (n - m))
            return value
        matched = tuple(g == pred for g in gts)
        value = self._ordered.get(matched)
        if value is None:
            value = self._ordered[matched] = _official_terms_sum(n, matched)
        return value


def _mean_percent(values: list[float]) -> float:
    return 100 * float(sum(values)) / len(values)


def vqa_accuracy(predictions: Mapping[Hashable, str], references: Mapping[Hashable, VqaReference]) -> VqaScores:
    """Official VQA accuracy of `predictions` ({question_id: answer}) against `references`.

    Every reference question needs a prediction and every prediction a reference (the official loadRes
    asserts the same); the error names the ids. Questions are scored in the order of `references` (the
    order of the official sums, which makes the floats identical to the official ones).
    """
    check_ids(_METRIC, predictions, references, allow_extra=False)
    if not references:
        raise ValueError(f"{_METRIC}: no questions to score")
    strip, normalise, table = _StripCache(), _NormaliseCache(), _ScoreTable()
    fixed = table.fixed
    per_question: dict[Hashable, float] = {}
    all_acc: list[float] = []
    by_qtype: dict[str, list[float]] = {}
    by_atype: dict[str, list[float]] = {}
    for qid, ref in references.items():
        pred = predictions[qid]
        if not isinstance(pred, str):
            check_text(_METRIC, "prediction for question", qid, pred)
        pred = strip[pred]
        gts = list(map(strip.__getitem__, ref.answers))
        if len(set(gts)) > 1:  # the official code normalises only when the humans disagree
            gts = list(map(normalise.__getitem__, gts))
            pred = normalise[pred]
        acc = fixed.get((len(gts), gts.count(pred)))
        if acc is None:
            acc = table.slow_score(gts, pred)
        all_acc.append(acc)
        per_question[qid] = 100 * acc
        if ref.question_type is not None:
            by_qtype.setdefault(ref.question_type, []).append(acc)
        if ref.answer_type is not None:
            by_atype.setdefault(ref.answer_type, []).append(acc)
    per_q_type = {t: _mean_percent(v) for t, v in by_qtype.items()}
    per_a_type = {t: _mean_percent(v) for t, v in by_atype.items()}
    overall = _mean_percent(all_acc)
    return VqaScores(
        overall=overall,
        per_answer_type=per_a_type,
        per_question_type=per_q_type,
        per_question=per_question,
        overall_rounded=official_round(overall),
        per_answer_type_rounded={t: official_round(v) for t, v in per_a_type.items()},
        per_question_type_rounded={t: official_round(v) for t, v in per_q_type.items()},
    )
