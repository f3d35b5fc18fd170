"""A straightforward Python 3 port of the official VQA accuracy loop (GT-Vision-Lab/VQA, vqaEval.py).

Written from the official code's logic, step for step, with its own normalisation steps (only the official
word tables are imported from clipvil), so that it is an independent reference: the benchmark times
clipvil.metrics.vqa against it
and tests/metrics/test_vqa.py checks that both give the same numbers. Kept deliberately unoptimised.

Inputs follow the official structures: `gts[qid] = {"answers": [{"answer": str, "answer_id": int}, ...],
"question_type": str, "answer_type": str}` and `res[qid] = {"answer": str}`.
"""

from __future__ import annotations

import re
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from clipvil.common.vqa_text import ARTICLES, CONTRACTIONS, NUMBER_WORDS, PUNCTUATION

# The official word tables (constants, shared); the algorithm below is the independent part.
_CONTRACTIONS = dict(CONTRACTIONS)
_MANUAL_MAP = dict(NUMBER_WORDS)  # a private copy: the official loop grows it with setdefault()
_ARTICLES = sorted(ARTICLES)
_PERIOD_STRIP = re.compile(r"(?!<=\d)(\.)(?!\d)")
_COMMA_STRIP = re.compile(r"(\d)(\,)(\d)")
_PUNCT = list(PUNCTUATION)


def _process_punctuation(in_text: str) -> str:
    out_text = in_text
    for p in _PUNCT:
        if (p + " " in in_text or " " + p in in_text) or (re.search(_COMMA_STRIP, in_text) is not None):
            out_text = out_text.replace(p, "")
        else:
            out_text = out_text.replace(p, " ")
    return _PERIOD_STRIP.sub("", out_text, re.UNICODE)


def _process_digit_article(in_text: str) -> str:
    out_text = []
    for word in in_text.lower().split():
        word = _MANUAL_MAP.setdefault(word, word)
        if word not in _ARTICLES:
            out_text.append(word)
    for word_id, word in enumerate(out_text):
        if word in _CONTRACTIONS:
            out_text[word_id] = _CONTRACTIONS[word]
    return " ".join(out_text)


def _py2_round(value: float, ndigits: int) -> float:
    """Python 2's round(): correctly rounded, ties away from zero (Python 3 rounds ties to even)."""
    return float(Decimal(value).quantize(Decimal(10) ** -ndigits, rounding=ROUND_HALF_UP))


def official_vqa_eval(gts: dict[Any, dict[str, Any]], res: dict[Any, dict[str, Any]], n: int = 2) -> dict[str, Any]:
    """The official evaluate() + setAccuracy(); `gts` is modified in place as the official code does."""
    acc_qa: list[float] = []
    acc_ques_type: dict[str, list[float]] = {}
    acc_ans_type: dict[str, list[float]] = {}
    eval_qa: dict[Any, float] = {}
    for ques_id in gts:
        for ans_dic in gts[ques_id]["answers"]:
            ans_dic["answer"] = ans_dic["answer"].replace("\n", " ")
            ans_dic["answer"] = ans_dic["answer"].replace("\t", " ")
            ans_dic["answer"] = ans_dic["answer"].strip()
        res_ans = res[ques_id]["answer"]
        res_ans = res_ans.replace("\n", " ")
        res_ans = res_ans.replace("\t", " ")
        res_ans = res_ans.strip()
        gt_acc = []
        gt_answers = [ans["answer"] for ans in gts[ques_id]["answers"]]
        if len(set(gt_answers)) > 1:
            for ans_dic in gts[ques_id]["answers"]:
                ans_dic["answer"] = _process_punctuation(ans_dic["answer"])
                ans_dic["answer"] = _process_digit_article(ans_dic["answer"])
            res_ans = _process_punctuation(res_ans)
            res_ans = _process_digit_article(res_ans)
        for gt_ans_datum in gts[ques_id]["answers"]:
            other_gt_ans = [item for item in gts[ques_id]["answers"] if item != gt_ans_datum]
            matching_ans = [item for item in other_gt_ans if item["answer"] == res_ans]
            acc = min(1, float(len(matching_ans)) / 3)
            gt_acc.append(acc)
        ques_type = gts[ques_id]["question_type"]
        ans_type = gts[ques_id]["answer_type"]
        avg_gt_acc = float(sum(gt_acc)) / len(gt_acc)
        acc_qa.append(avg_gt_acc)
        acc_ques_type.setdefault(ques_type, []).append(avg_gt_acc)
        acc_ans_type.setdefault(ans_type, []).append(avg_gt_acc)
        eval_qa[ques_id] = _py2_round(100 * avg_gt_acc, n)
    return {
        "overall": _py2_round(100 * float(sum(acc_qa)) / len(acc_qa), n),
        "perQuestionType": {t: _py2_round(100 * float(sum(v)) / len(v), n) for t, v in acc_ques_type.items()},
        "perAnswerType": {t: _py2_round(100 * float(sum(v)) / len(v), n) for t, v in acc_ans_type.items()},
        # Not in the official output: the unrounded values, for exact comparisons.
        "unrounded": {
            "overall": 100 * float(sum(acc_qa)) / len(acc_qa),
            "perQuestionType": {t: 100 * float(sum(v)) / len(v) for t, v in acc_ques_type.items()},
            "perAnswerType": {t: 100 * float(sum(v)) / len(v) for t, v in acc_ans_type.items()},
            "perQuestion": {q: 100 * v for q, v in zip(gts, acc_qa)},
        },
        "evalQA": eval_qa,
    }
