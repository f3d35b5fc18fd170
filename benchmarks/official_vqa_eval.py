"""A straightforward Python 3 port of the official VQA accuracy loop (GT-Vision-Lab/VQA, vqaEval.py).

Written from the official code's logic, step for step, with its own copy of the normalisation (no import
from clipvil), so that it is an independent reference: the benchmark times clipvil.metrics.vqa against it
and tests/metrics/test_vqa.py checks that both give the same numbers. Kept deliberately unoptimised.

Inputs follow the official structures: `gts[qid] = {"answers": [{"answer": str, "answer_id": int}, ...],
"question_type": str, "answer_type": str}` and `res[qid] = {"answer": str}`.
"""

from __future__ import annotations

import re
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

_CONTRACTIONS = {
    "aint": "ain't", "arent": "aren't", "cant": "can't", "couldve": "could've", "couldnt": "couldn't",
    "couldn'tve": "couldn't've", "couldnt've": "couldn't've", "didnt": "didn't", "doesnt": "doesn't",
    "dont": "don't", "hadnt": "hadn't", "hadnt've": "hadn't've", "hadn'tve": "hadn't've", "hasnt": "hasn't",
    "havent": "haven't", "hed": "he'd", "hed've": "he'd've", "he'dve": "he'd've", "hes": "he's",
    "howd": "how'd", "howll": "how'll", "hows": "how's", "Id've": "I'd've", "I'dve": "I'd've", "Im": "I'm",
    "Ive": "I've", "isnt": "isn't", "itd": "it'd", "itd've": "it'd've", "it'dve": "it'd've", "itll": "it'll",
    "let's": "let's", "maam": "ma'am", "mightnt": "mightn't", "mightnt've": "mightn't've",
    "mightn'tve": "mightn't've", "mightve": "might've", "mustnt": "mustn't", "mustve": "must've",
    "neednt": "needn't", "notve": "not've", "oclock": "o'clock", "oughtnt": "oughtn't",
    "ow's'at": "'ow's'at", "'ows'at": "'ow's'at", "'ow'sat": "'ow's'at", "shant": "shan't",
    "shed've": "she'd've", "she'dve": "she'd've", "she's": "she's", "shouldve": "should've",
    "shouldnt": "shouldn't", "shouldnt've": "shouldn't've", "shouldn'tve": "shouldn't've",
    "somebody'd": "somebodyd", "somebodyd've": "somebody'd've", "somebody'dve": "somebody'd've",
    "somebodyll": "somebody'll", "somebodys": "somebody's", "someoned": "someone'd",
    "someoned've": "someone'd've", "someone'dve": "someone'd've", "someonell": "someone'll",
    "someones": "someone's", "somethingd": "something'd", "somethingd've": "something'd've",
    "something'dve": "something'd've", "somethingll": "something'll", "thats": "that's",
    "thered": "there'd", "thered've": "there'd've", "there'dve": "there'd've", "therere": "there're",
    "theres": "there's", "theyd": "they'd", "theyd've": "they'd've", "they'dve": "they'd've",
    "theyll": "they'll", "theyre": "they're", "theyve": "they've", "twas": "'twas", "wasnt": "wasn't",
    "wed've": "we'd've", "we'dve": "we'd've", "weve": "we've", "werent": "weren't", "whatll": "what'll",
    "whatre": "what're", "whats": "what's", "whatve": "what've", "whens": "when's", "whered": "where'd",
    "wheres": "where's", "whereve": "where've", "whod": "who'd", "whod've": "who'd've",
    "who'dve": "who'd've", "wholl": "who'll", "whos": "who's", "whove": "who've", "whyll": "why'll",
    "whyre": "why're", "whys": "why's", "wont": "won't", "wouldve": "would've", "wouldnt": "wouldn't",
    "wouldnt've": "wouldn't've", "wouldn'tve": "wouldn't've", "yall": "y'all", "yall'll": "y'all'll",
    "y'allll": "y'all'll", "yall'd've": "y'all'd've", "y'alld've": "y'all'd've", "y'all'dve": "y'all'd've",
    "youd": "you'd", "youd've": "you'd've", "you'dve": "you'd've", "youll": "you'll", "youre": "you're",
    "youve": "you've",
}
_MANUAL_MAP = {
    "none": "0", "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5", "six": "6",
    "seven": "7", "eight": "8", "nine": "9", "ten": "10",
}
_ARTICLES = ["a", "an", "the"]
_PERIOD_STRIP = re.compile(r"(?!<=\d)(\.)(?!\d)")
_COMMA_STRIP = re.compile(r"(\d)(\,)(\d)")
_PUNCT = [";", r"/", "[", "]", '"', "{", "}", "(", ")", "=", "+", "\\", "_", "-", ">", "<", "@", "`", ",", "?", "!"]


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
