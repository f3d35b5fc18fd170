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


def _results(path: Path, fields: tuple[str, str]) -> dict[Any, Any]:
    """{key: value} from an official results list, with errors naming the file and the entry."""
    data = json.loads(Path(path).read_text())
    if not isinstance(data, list):
        raise ValueError(f"{path}: a results file must be a JSON list of objects")
    out: dict[Any, Any] = {}
    for i, row in enumerate(data):
        if not isinstance(row, dict) or any(f not in row for f in fields):
            raise ValueError(f"{path}: entry {i}: needs the fields {list(fields)}")
        if row[fields[0]] in out:
            raise ValueError(f"{path}: entry {i}: duplicate {fields[0]} {row[fields[0]]!r}")
        out[row[fields[0]]] = row[fields[1]]
    return out


def score_vqa(results: Path, annotations: Path, questions: Path) -> dict[str, Any]:
    """Official VQA accuracy (overall, per answer type, per question type)."""
    split = read_vqa(questions, annotations)
    refs = {e.question_id: VqaReference(e.answers, e.question_type, e.answer_type) for e in split.examples}
    preds = predictions_from_results(json.loads(Path(results).read_text()))
    return vqa_accuracy(preds, refs).to_dict()


def score_gqa(results: Path, questions: Path) -> dict[str, Any]:
    """GQA accuracy (exact match), with binary/open breakdown."""
    split = read_gqa(questions, require_answers=True)
    answers = {q.question_id: q.answer for q in split.questions}
    types = {q.question_id: q.structural for q in split.questions if q.structural is not None}
    return gqa_accuracy(_results(results, ("questionId", "prediction")), answers,
                        types if len(types) == len(answers) else None)


def score_snli_ve(results: Path, pairs: Path) -> dict[str, Any]:
    """SNLI-VE accuracy, overall and per gold label."""
    gold = {p.pair_id: p.label for p in read_snli_ve(pairs).pairs}
    return snli_ve_accuracy(_results(results, ("pairID", "label")), gold)


def score_caption(results: Path, references: Path, meteor: bool = True, spice: bool = True) -> dict[str, Any]:
    """BLEU-1..4, METEOR, ROUGE-L, CIDEr (and SPICE when its models are present) via pycocoevalcap."""
    refs = read_coco_captions(references).by_image()
    preds = _results(results, ("image_id", "caption"))
    unknown = sorted(set(preds) - set(refs), key=repr)
    if unknown:
        raise ValueError(f"{results}: {len(unknown)} image id(s) not in {references}, e.g. {unknown[:3]}")
    # like COCOEvalCap, the images scored are those of the results file
    return caption_scores(preds, {k: refs[k] for k in preds}, meteor=meteor, spice=spice)


def score_r2r(results: Path, instructions: Path, connectivity: Path) -> dict[str, Any]:
    """TL, NE, SR, OSR, SPL, nDTW, sDTW on the Matterport connectivity graphs."""
    items = read_r2r(instructions)
    graphs = load_nav_graphs(connectivity, sorted({it.scan for it in items}))
    refs = {it.instr_id: it for it in items}
    traj = _results(results, ("instr_id", "trajectory"))
    distances = {scan: shortest_distances(g) for scan, g in graphs.items()}
    return navigation_scores(traj, refs, distances).to_dict()
