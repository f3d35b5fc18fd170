"""`clipvil score`: a results file in the official submission format + the references → metrics (a dict).

| kind    | results file                                   | references                                       |
|---------|------------------------------------------------|--------------------------------------------------|
| vqa     | [{"question_id": int, "answer": str}]          | v2_mscoco_<split>_annotations.json (+ questions)  |
| gqa     | [{"questionId": str, "prediction": str}]       | <split>_balanced_questions.json (file or folder) |
| snli-ve | [{"pairID": str, "label": str}]                | snli_ve_<split>.jsonl                            |
| caption | [{"image_id": int, "caption": str}]            | COCO caption JSON (captions_<split>.json)        |
| r2r     | [{"instr_id": str, "trajectory": [[vp, h, e]]}]| R2R_<split>.json + connectivity folder           |
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from clipvil.data.captions import read_coco_captions
from clipvil.data.gqa import read_gqa
from clipvil.data.nav import load_nav_graphs, read_r2r, shortest_distances
from clipvil.data.snli_ve import read_snli_ve
from clipvil.data.vqa import read_vqa
from clipvil.metrics.accuracy import gqa_accuracy, snli_ve_accuracy
from clipvil.metrics.caption import caption_scores
from clipvil.metrics.nav import navigation_scores
from clipvil.metrics.vqa import VqaReference, predictions_from_results, vqa_accuracy

# kind -> the reference paths it takes (shown in `clipvil score --help`)
REFERENCES: dict[str, str] = {
    "vqa": "ANNOTATIONS QUESTIONS",
    "gqa": "QUESTIONS",
    "snli-ve": "PAIRS.jsonl",
    "caption": "COCO_CAPTIONS.json",
    "r2r": "R2R_SPLIT.json CONNECTIVITY_DIR",
}


def load_results(path: Path) -> list[Any]:
    """The JSON list of a results file; errors name the file (missing, not text, not JSON, not a list)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: results file not found")
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError(f"{path}: not a JSON results file (the file is not UTF-8 text)") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        hint = " — the file looks truncated" if err.pos >= len(text.rstrip()) else ""
        raise ValueError(f"{path}: not valid JSON at line {err.lineno} column {err.colno}: {err.msg}{hint}") from None
    if isinstance(data, dict):
        keys = ", ".join(sorted(map(str, data))[:5])
        raise ValueError(f"{path}: a results file is a JSON list of objects; this one is an object with keys "
                         f"[{keys}] (pass the list itself, e.g. the value under one of these keys)")
    if not isinstance(data, list):
        raise ValueError(f"{path}: a results file must be a JSON list of objects, got {type(data).__name__}")
    return data


def _results(path: Path, fields: tuple[str, str]) -> dict[Any, Any]:
    """{key: value} from an official results list, with errors naming the file and the entry."""
    out: dict[Any, Any] = {}
    for i, row in enumerate(load_results(path)):
        if not isinstance(row, dict) or any(f not in row for f in fields):
            raise ValueError(f"{path}: entry {i}: needs the fields {list(fields)}, got {row!r:.80}")
        if row[fields[0]] in out:
            raise ValueError(f"{path}: entry {i}: duplicate {fields[0]} {row[fields[0]]!r}")
        out[row[fields[0]]] = row[fields[1]]
    return out


def restrict(preds: dict[Any, Any], gold: dict[Any, Any], results: Path, refs: Path, item: str,
             subset: bool) -> dict[Any, Any]:
    """The gold entries to score: every one (each must be answered) or, with `subset`, those answered.
    Ids the references do not know are refused in both cases."""
    unknown = [k for k in preds if k not in gold]
    if unknown:
        raise ValueError(f"{results}: {len(unknown)} {item}(s) not in {refs}, e.g. {unknown[:3]}")
    missing = [k for k in gold if k not in preds]
    if missing and not subset:
        raise ValueError(f"{results}: {len(missing)} of {len(gold)} {item}s of {refs} have no result, e.g. "
                         f"{missing[:3]} (pass --subset to score only those answered)")
    return {k: gold[k] for k in preds} if subset else gold


def score(kind: str, results: Path, refs: list[Path], meteor: bool = True, subset: bool = False) -> dict[str, Any]:
    """Dispatches `clipvil score KIND RESULTS REFS...` by name; the output says `n` and whether a subset."""
    need = len(REFERENCES[kind].split())
    if len(refs) != need:
        raise ValueError(f"score {kind} takes {need} reference path(s) ({REFERENCES[kind]}), got {len(refs)}")
    scorers = {
        "vqa": lambda: score_vqa(results, refs[0], refs[1], subset),
        "gqa": lambda: score_gqa(results, refs[0], subset),
        "snli-ve": lambda: score_snli_ve(results, refs[0], subset),
        "caption": lambda: score_caption(results, refs[0], meteor=meteor, subset=subset),
        "r2r": lambda: score_r2r(results, refs[0], refs[1], subset),
    }
    out = scorers[kind]()
    out["subset"] = subset
    return out


def score_vqa(results: Path, annotations: Path, questions: Path, subset: bool = False) -> dict[str, Any]:
    """Official VQA accuracy (overall, per answer type, per question type)."""
    split = read_vqa(questions, annotations)
    refs = {e.question_id: VqaReference(e.answers, e.question_type, e.answer_type) for e in split.examples}
    try:
        preds = predictions_from_results(load_results(results))
    except ValueError as err:
        raise ValueError(f"{results}: {err}") from None
    refs = restrict(preds, refs, results, annotations, "question", subset)
    return {**vqa_accuracy(preds, refs).to_dict(), "n": len(refs)}


def score_gqa(results: Path, questions: Path, subset: bool = False) -> dict[str, Any]:
    """GQA accuracy (exact match), with binary/open breakdown."""
    split = read_gqa(questions, require_answers=True)
    answers = {q.question_id: q.answer for q in split.questions}
    types = {q.question_id: q.structural for q in split.questions if q.structural is not None}
    preds = _results(results, ("questionId", "prediction"))
    answers = restrict(preds, answers, results, questions, "question", subset)
    types = {k: v for k, v in types.items() if k in answers}
    return gqa_accuracy(preds, answers, types if len(types) == len(answers) else None)


def score_snli_ve(results: Path, pairs: Path, subset: bool = False) -> dict[str, Any]:
    """SNLI-VE accuracy, overall and per gold label."""
    gold = {p.pair_id: p.label for p in read_snli_ve(pairs).pairs}
    preds = _results(results, ("pairID", "label"))
    return snli_ve_accuracy(preds, restrict(preds, gold, results, pairs, "pair", subset))


def score_caption(results: Path, references: Path, meteor: bool = True, spice: bool = True,
                  subset: bool = False) -> dict[str, Any]:
    """BLEU-1..4, METEOR, ROUGE-L, CIDEr (and SPICE when its models are present) via pycocoevalcap."""
    refs = read_coco_captions(references).by_image()
    preds = _results(results, ("image_id", "caption"))
    refs = restrict(preds, refs, results, references, "image", subset)
    return {**caption_scores(preds, refs, meteor=meteor, spice=spice), "n": len(refs)}


def score_r2r(results: Path, instructions: Path, connectivity: Path, subset: bool = False) -> dict[str, Any]:
    """TL, NE, SR, OSR, SPL, nDTW, sDTW on the Matterport connectivity graphs."""
    items = read_r2r(instructions)
    graphs = load_nav_graphs(connectivity, sorted({it.scan for it in items}))
    refs = {it.instr_id: it for it in items}
    traj = _results(results, ("instr_id", "trajectory"))
    refs = restrict(traj, refs, results, instructions, "instruction", subset)
    distances = {scan: shortest_distances(g) for scan, g in graphs.items()}
    return {**navigation_scores(traj, refs, distances).to_dict(), "n": len(refs)}
