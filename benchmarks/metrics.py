"""Side-by-side speed of our metrics vs the reference implementations, in one run, with equal numbers asserted.

1. VQA accuracy: clipvil.metrics.vqa_accuracy vs a straightforward port of the official loop
   (benchmarks/official_vqa_eval.py) on synthetic questions: 10 human answers drawn around a true answer
   from the real 3129-answer vocabulary, with surface variants (case, punctuation, number words, articles).
2. CIDEr-D: clipvil.metrics.cider_d vs pycocoevalcap's Cider on the 5000 Karpathy-test images (real
   references, PTB-tokenised once beforehand): the held-out human caption of each image against the others.

Run: .venv/bin/python benchmarks/metrics.py --out benchmarks/results/metrics.json
"""

from __future__ import annotations

import argparse
import copy
import json
import random
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run as a script: make `benchmarks` importable

from pycocoevalcap.cider.cider import Cider

from benchmarks.common import best_seconds, write_json
from benchmarks.official_vqa_eval import official_vqa_eval
from clipvil.metrics import VqaReference, cider_d, ptb_tokenize, vqa_accuracy

DATA = REPO.parent / "shared" / "data"
NUMBER_WORDS = {"0": "zero", "1": "one", "2": "two", "3": "three", "4": "four", "5": "five", "10": "ten"}


def _variant(rng: random.Random, answer: str) -> str:
    """A surface form a human might type for `answer` (the official normalisation undoes most of them)."""
    kind = rng.random()
    if kind < 0.06:
        return answer.capitalize()
    if kind < 0.10:
        return answer + rng.choice([".", "!", "?", " "])
    if kind < 0.13 and answer in NUMBER_WORDS:
        return NUMBER_WORDS[answer]
    if kind < 0.16:
        return rng.choice(["a ", "the ", "an "]) + answer
    if kind < 0.18:
        return answer.replace(" ", "-")
    return answer


def synthetic_vqa(n_questions: int, seed: int = 0) -> tuple[dict[int, VqaReference], dict[int, str]]:
    """Questions with 10 answers around a true answer (yes/no and small numbers frequent, as in VQA v2)."""
    rng = random.Random(seed)
    vocab = [a for a in json.loads((DATA / "clip-vil/answer_vocab/vqa/trainval_label2ans.json").read_text()) if a]
    qtypes = (DATA / "vqa-official/mscoco_question_types.txt").read_text().split("\n")
    qtypes = [t.strip() for t in qtypes if t.strip()]
    refs: dict[int, VqaReference] = {}
    preds: dict[int, str] = {}
    for qid in range(n_questions):
        kind = rng.random()
        if kind < 0.38:
            truth, atype = rng.choice(["yes", "no"]), "yes/no"
        elif kind < 0.50:
            truth, atype = str(rng.choice([0, 1, 2, 2, 3, 3, 4, 5, 10])), "number"
        else:
            truth, atype = rng.choice(vocab), "other"
        agreement = rng.choice([0.3, 0.5, 0.7, 0.9, 1.0])
        answers = tuple(_variant(rng, truth) if rng.random() < agreement else rng.choice(vocab) for _ in range(10))
        refs[qid] = VqaReference(answers, rng.choice(qtypes), atype)
        preds[qid] = _variant(rng, truth) if rng.random() < 0.65 else rng.choice(vocab)
    return refs, preds


def bench_vqa(n_questions: int) -> dict[str, Any]:
    refs, preds = synthetic_vqa(n_questions)
    gts = {q: {"answers": [{"answer": a, "answer_confidence": "yes", "answer_id": i + 1}
                           for i, a in enumerate(r.answers)],
               "question_type": r.question_type, "answer_type": r.answer_type} for q, r in refs.items()}
    res = {q: {"answer": p} for q, p in preds.items()}
    fresh = copy.deepcopy(gts)  # the official loop normalises the answers in place: time it on a fresh copy
    start = time.perf_counter()
    official = official_vqa_eval(fresh, res)
    official_s = time.perf_counter() - start
    ours = vqa_accuracy(preds, refs)
    ours_s = best_seconds(lambda: vqa_accuracy(preds, refs), repeats=3)
    unrounded = official["unrounded"]
    assert ours.per_question == unrounded["perQuestion"], "per-question accuracies differ"
    assert (ours.overall, ours.per_answer_type, ours.per_question_type) == (
        unrounded["overall"], unrounded["perAnswerType"], unrounded["perQuestionType"]), "accuracies differ"
    assert (ours.overall_rounded, ours.per_answer_type_rounded, ours.per_question_type_rounded) == (
        official["overall"], official["perAnswerType"], official["perQuestionType"]), "rounded accuracies differ"
    return {
        "n_questions": n_questions,
        "official_port_seconds": official_s,
        "ours_seconds": ours_s,
        "speedup": official_s / ours_s,
        "same_numbers": True,
        "overall": ours.overall_rounded,
        "per_answer_type": ours.per_answer_type_rounded,
    }


def bench_cider() -> dict[str, Any]:
    data = json.loads((DATA / "coco-caption/derived/coco_karpathy_test_gt.json").read_text())
    captions: dict[int, list[str]] = defaultdict(list)
    for ann in data["annotations"]:
        captions[ann["image_id"]].append(ann["caption"])
    tokens = ptb_tokenize(captions)  # once, untimed: both scorers take the same PTB-tokenised strings
    preds = {i: caps[-1] for i, caps in tokens.items()}  # the held-out human caption (codalab answer.zip)
    refs = {i: caps[:-1] for i, caps in tokens.items()}
    res = {i: [p] for i, p in preds.items()}
    want, want_each = Cider().compute_score(refs, res)
    pycoco_s = best_seconds(lambda: Cider().compute_score(refs, res), repeats=3, warmup=0)
    got, got_each = cider_d(preds, refs)
    ours_s = best_seconds(lambda: cider_d(preds, refs), repeats=5)
    max_diff = max(abs(got_each[i] - w) for i, w in zip(refs, want_each))
    assert abs(got - want) < 1e-9 and max_diff < 1e-9, f"CIDEr-D differs: {got} vs {want}, max {max_diff}"
    n_refs = sorted({len(r) for r in refs.values()})
    return {
        "n_images": len(refs),
        "references_per_image": n_refs,
        "n_reference_captions": sum(len(r) for r in refs.values()),
        "pycocoevalcap_seconds": pycoco_s,
        "ours_seconds": ours_s,
        "speedup": pycoco_s / ours_s,
        "cider_d": got,
        "max_abs_difference_per_image": max_diff,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "metrics.json"))
    parser.add_argument("--vqa-questions", type=int, default=200_000)
    args = parser.parse_args()
    vqa = bench_vqa(args.vqa_questions)
    print(f"VQA accuracy: {vqa['speedup']:.1f}x faster than the official loop", file=sys.stderr)
    cider = bench_cider()
    print(f"CIDEr-D: {cider['speedup']:.1f}x faster than pycocoevalcap", file=sys.stderr)
    write_json(args.out, {"vqa_accuracy": vqa, "cider_d": cider})


if __name__ == "__main__":
    main()
