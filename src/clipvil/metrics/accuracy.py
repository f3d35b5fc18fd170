"""Exact-match accuracies of GQA and SNLI-VE, in percent.

GQA: as the official eval.py (gqadataset.org) scores accuracy: a prediction is correct when it is the
same string as the gold answer (no normalisation: GQA answers are lower-case words of a closed
vocabulary), averaged over the balanced questions; "binary" and "open" split by structural type
(open = "query", binary = the rest). Predictions for questions outside the scored set are ignored, as
there (the official file asks for predictions to all questions, scores the balanced ones).

SNLI-VE: the predicted label must equal the gold label, one of entailment / neutral / contradiction.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Mapping
from typing import Any

from clipvil.metrics._checks import check_ids, check_text

SNLI_VE_LABELS = ("entailment", "neutral", "contradiction")


def _percent(correct: list[bool]) -> float:
    return 100.0 * sum(correct) / len(correct)


def gqa_accuracy(
    predictions: Mapping[Hashable, str],
    answers: Mapping[Hashable, str],
    structural_types: Mapping[Hashable, str] | None = None,
) -> dict[str, float]:
    """{"accuracy", ["binary", "open",] "n"} over the questions of `answers` ({question_id: gold answer})."""
    check_ids("gqa_accuracy", predictions, answers, allow_extra=True)
    if not answers:
        raise ValueError("gqa_accuracy: no questions to score")
    correct = {
        qid: check_text("gqa_accuracy", "prediction for question", qid, predictions[qid]) == gold
        for qid, gold in answers.items()
    }
    out = {"accuracy": _percent(list(correct.values())), "n": float(len(correct))}
    if structural_types is not None:
        missing = answers.keys() - structural_types.keys()
        if missing:
            raise ValueError(f"gqa_accuracy: no structural type for question(s) {sorted(missing, key=repr)[:5]}")
        for kind in ("binary", "open"):
            subset = [ok for qid, ok in correct.items() if (structural_types[qid] == "query") == (kind == "open")]
            if subset:
                out[kind] = _percent(subset)
    return out


def gqa_answers_from_questions(
    questions: Mapping[str, Mapping[str, Any]], balanced_only: bool = True
) -> tuple[dict[str, str], dict[str, str]]:
    """({qid: answer}, {qid: structural type}) from an official GQA questions dict (balanced ones by default)."""
    answers: dict[str, str] = {}
    types: dict[str, str] = {}
    for qid, q in questions.items():
        if not isinstance(q, Mapping) or not isinstance(q.get("answer"), str):
            raise ValueError(f"gqa_accuracy: question {qid}: needs a string 'answer' (test questions have none)")
        if balanced_only and not q.get("isBalanced", False):
            continue
        structural = q.get("types", {}).get("structural")
        if not isinstance(structural, str):
            raise ValueError(f"gqa_accuracy: question {qid}: needs types.structural")
        answers[qid], types[qid] = q["answer"], structural
    return answers, types


def _check_label(kind: str, key: Hashable, label: object) -> str:
    text = check_text("snli_ve_accuracy", kind, key, label)
    if text not in SNLI_VE_LABELS:
        raise ValueError(f"snli_ve_accuracy: {kind} {key!r}: {text!r} is not one of {SNLI_VE_LABELS}")
    return text


def snli_ve_accuracy(predictions: Mapping[Hashable, str], gold_labels: Mapping[Hashable, str]) -> dict[str, Any]:
    """{"accuracy", "per_label": {gold label: accuracy}, "n"} of {pair_id: label} predictions."""
    check_ids("snli_ve_accuracy", predictions, gold_labels, allow_extra=False, item="pair")
    if not gold_labels:
        raise ValueError("snli_ve_accuracy: no pairs to score")
    by_label: dict[str, list[bool]] = {}
    for key, gold in gold_labels.items():
        ok = _check_label("prediction for pair", key, predictions[key]) == _check_label("gold label of pair", key, gold)
        by_label.setdefault(gold, []).append(ok)
    all_ok = [ok for oks in by_label.values() for ok in oks]
    return {
        "accuracy": _percent(all_ok),
        "per_label": {label: _percent(by_label[label]) for label in SNLI_VE_LABELS if label in by_label},
        "n": len(all_ok),
    }


def snli_ve_gold_labels(rows: Iterable[Mapping[str, Any]]) -> dict[str, str]:
    """{pairID: gold_label} from SNLI-VE jsonl rows (plain dicts)."""
    labels: dict[str, str] = {}
    for index, row in enumerate(rows):
        pair = row.get("pairID")
        if not isinstance(pair, str):
            raise ValueError(f"snli_ve_accuracy: row {index}: needs a string pairID")
        if pair in labels:
            raise ValueError(f"snli_ve_accuracy: row {index}: duplicate pairID {pair}")
        labels[pair] = _check_label("gold label of pair", pair, row.get("gold_label"))
    return labels
