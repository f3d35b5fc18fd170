"""`clipvil score`: a results file in the official submission format + the references → metrics (a dict).

| kind    | results file                                   | references                                       |
|---------|------------------------------------------------|--------------------------------------------------|
| vqa     | [{"question_id": int, "answer": str}]          | v2_mscoco_<split>_annotations.json (+ questions)  |
| gqa     | [{"questionId": str, "prediction": str}]       | <split>_balanced_questions.json (file or folder) |
| nlvr2   | CSV `identifier,prediction` or [{"identifier", "prediction"}] | dev.json / test1.json (JSON lines) |
| snli-ve | [{"pairID": str, "label": str}]                | snli_ve_<split>.jsonl                            |
| caption | [{"image_id": int, "caption": str}]            | COCO caption JSON (captions_<split>.json)        |
| r2r     | [{"instr_id": str, "trajectory": [[vp, h, e]]}]| R2R_<split>.json + connectivity folder           |
| rxr     | [{"instr_id": str, "trajectory": [[vp, h, e]]}]| rxr_<split>_guide.jsonl[.gz] + connectivity folder |
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from clipvil.data.captions import read_coco_captions
from clipvil.data.gqa import gqa_question_files, read_gqa
from clipvil.data.nav import load_nav_graphs, read_r2r, read_rxr, shortest_distances
from clipvil.data.nlvr2 import read_nlvr2
from clipvil.data.snli_ve import read_snli_ve
from clipvil.data.validate import load_json
from clipvil.data.vqa import read_vqa
from clipvil.metrics.accuracy import gqa_accuracy, snli_ve_accuracy
from clipvil.metrics.caption import caption_scores
from clipvil.metrics.gqa_eval import gqa_eval
from clipvil.metrics.nav import navigation_scores
from clipvil.metrics.nlvr2 import nlvr2_scores, read_nlvr2_predictions
from clipvil.metrics.vqa import VqaReference, predictions_from_results, vqa_accuracy

# kind -> the reference paths it takes (shown in `clipvil score --help`)
REFERENCES: dict[str, str] = {
    "vqa": "ANNOTATIONS QUESTIONS",
    "gqa": "QUESTIONS",
    "snli-ve": "PAIRS.jsonl",
    "caption": "COCO_CAPTIONS.json",
    "r2r": "R2R_SPLIT.json CONNECTIVITY_DIR",
    "rxr": "RXR_SPLIT_GUIDE.jsonl CONNECTIVITY_DIR",
    "nlvr2": "ANNOTATIONS.json",
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


@dataclass(frozen=True)
class GqaFiles:
    """The optional inputs of GQA's full official metrics (eval.py); a metric whose input is not given is
    reported under `notComputed` with the reason."""

    choices: Path | None = None  # <split>_choices.json ({qid: {valid, plausible}}): validity, plausibility
    all_questions: Path | None = None  # <split>_all_questions.json (file or folder): consistency (needs
    # predictions for the entailed, mostly unbalanced, questions too)
    attentions: Path | None = None  # [{"questionId", "attention"}] (attention models): grounding
    scene_graphs: Path | None = None  # <split>_sceneGraphs.json ({imageId: graph}): grounding
    map_size: int = 7  # grounding: side of a spatial attention map (eval.py --mapSize)
    object_features: bool = False  # grounding: attention rows are [x0, y0, x1, y1, a] boxes (--objectFeatures)


def score(kind: str, results: Path, refs: list[Path], meteor: bool = True, subset: bool = False, *,
          allow_extra: bool = False, gqa_files: GqaFiles | None = None) -> dict[str, Any]:
    """Dispatches `clipvil score KIND RESULTS REFS...` by name; the output says `n` and whether a subset.

    allow_extra (nlvr2): ignore predictions for examples the annotations do not hold. gqa_files (gqa): the
    choices / all-questions / attention / scene-graph files of eval.py's other metrics."""
    need = len(REFERENCES[kind].split())
    if len(refs) != need:
        raise ValueError(f"score {kind} takes {need} reference path(s) ({REFERENCES[kind]}), got {len(refs)}")
    scorers = {
        "vqa": lambda: score_vqa(results, refs[0], refs[1], subset),
        "gqa": lambda: score_gqa(results, refs[0], subset, gqa_files),
        "snli-ve": lambda: score_snli_ve(results, refs[0], subset),
        "caption": lambda: score_caption(results, refs[0], meteor=meteor, subset=subset),
        "r2r": lambda: score_r2r(results, refs[0], refs[1], subset),
        "rxr": lambda: score_rxr(results, refs[0], refs[1], subset),
        "nlvr2": lambda: score_nlvr2(results, refs[0], subset, allow_extra),
    }
    if allow_extra and kind != "nlvr2":
        raise ValueError(f"score {kind}: allow_extra (--allow-extra) is an nlvr2 option")
    if gqa_files is not None and kind != "gqa":
        raise ValueError(f"score {kind}: choices / all-questions / attentions / scene-graphs are gqa options")
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


def score_gqa(results: Path, questions: Path, subset: bool = False, files: GqaFiles | None = None) -> dict[str, Any]:
    """GQA's official metrics (eval.py) over the balanced questions: accuracy, binary, open, distribution and
    the breakdowns from the questions file alone; validity / plausibility, consistency and grounding when
    `files` gives their inputs (otherwise named under `notComputed`). A questions file without eval.py's
    fields (isBalanced, types, groups, semantic) gets exact-match accuracy over all its questions."""
    split = read_gqa(questions, require_answers=True)  # validates, errors name the file and the question
    preds = _results(results, ("questionId", "prediction"))
    raw = _gqa_question_dicts(questions)
    files = files or GqaFiles()
    if not all(_official_entry(q) for q in raw.values()):
        if files != GqaFiles():
            raise ValueError(f"{questions}: the full GQA metrics need eval.py's fields (isBalanced, types, "
                             "groups, semantic) in every question; this file lacks them")
        answers = {q.question_id: q.answer for q in split.questions}
        types = {q.question_id: q.structural for q in split.questions if q.structural is not None}
        answers = restrict(preds, answers, results, questions, "question", subset)
        types = {k: v for k, v in types.items() if k in answers}
        return {**gqa_accuracy(preds, answers, types if len(types) == len(answers) else None),
                "notComputed": {"official": f"{questions} lacks eval.py's fields (isBalanced, types, groups, "
                                            "semantic): exact-match accuracy over every question only"}}
    everything = _gqa_question_dicts(files.all_questions) if files.all_questions else None
    restrict(preds, everything or raw, results, files.all_questions or questions, "question", subset=True)
    balanced = {k: q for k, q in raw.items() if q["isBalanced"]}
    wanted = restrict({k: v for k, v in preds.items() if k in balanced}, balanced, results, questions,
                      "balanced question", subset)
    choices = _json_object(files.choices) if files.choices else None
    attentions = _results(files.attentions, ("questionId", "attention")) if files.attentions else None
    graphs = _json_object(files.scene_graphs) if files.scene_graphs else None
    for path, have, keys, what in (
        (files.choices, choices, [(q, q) for q in wanted], "choices entries"),
        (files.attentions, attentions, [(q, q) for q in wanted], "attention maps"),
        (files.scene_graphs, graphs, [(q, wanted[q].get("imageId")) for q in wanted], "scene graphs"),
        (files.all_questions, everything, _entailed(wanted), "entailed questions"),
        (results, preds if everything is not None else None, _entailed(wanted),
         "predictions for entailed questions (consistency needs predictions for the all-questions file)"),
    ):
        _need_all(path, have, keys, what)
    try:
        scores = gqa_eval(preds, wanted, choices=choices, all_questions=everything, attentions=attentions,
                          scene_graphs=graphs, map_size=files.map_size, object_features=files.object_features)
    except ValueError as err:
        raise ValueError(f"{questions}: {err}") from None
    return {**scores.to_dict(), "n": scores.n_questions}


def _official_entry(q: object) -> bool:
    return (isinstance(q, dict) and isinstance(q.get("isBalanced"), bool) and isinstance(q.get("types"), dict)
            and isinstance(q.get("groups"), dict) and isinstance(q.get("semantic"), list))


def _gqa_question_dicts(path: Path) -> dict[str, Any]:
    """{question id: raw entry} of a GQA questions file or folder of shards."""
    out: dict[str, Any] = {}
    for shard in gqa_question_files(path):
        data = _json_object(shard)
        twice = next((k for k in data if k in out), None)
        if twice is not None:
            raise ValueError(f"{shard}: question {twice} is also in an earlier shard of {path}")
        out.update(data)
    return out


def _json_object(path: Path) -> dict[str, Any]:
    data = load_json(path)
    if isinstance(data, dict):
        return data
    raise ValueError(f"{path}: expected a JSON object keyed by id, got {type(data).__name__}")


def _entailed(questions: dict[str, Any]) -> list[tuple[str, Any]]:
    """(question id, entailed id) pairs, the question itself excluded (as eval.py does)."""
    return [(qid, e) for qid, q in questions.items() for e in (q.get("entailed") or []) if e != qid]


def _need_all(path: Path | None, have: Any, keys: list[tuple[str, Any]], what: str) -> None:
    """ValueError naming `path` when a needed key is not in `have` (nothing to check when `have` is None)."""
    if have is None or path is None:
        return
    missing = [(qid, key) for qid, key in keys if key not in have]
    if missing:
        qid, key = missing[0]
        raise ValueError(f"{path}: {len(missing)} {what} missing, e.g. {key!r} (for question {qid})")


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


def score_nlvr2(results: Path, annotations: Path, subset: bool = False, allow_extra: bool = False) -> dict[str, Any]:
    """NLVR2 accuracy and consistency as lil-lab/nlvr's metrics.py defines them (percent), from its CSV
    (`identifier,prediction`) or a JSON list. allow_extra: ignore predictions for examples not in the
    annotations (whole-dev predictions scored on balanced_dev.json, as compute_filtered_accuracy.py does)."""
    labels = read_nlvr2(annotations).labels()
    preds = read_nlvr2_predictions(results)
    if allow_extra:
        preds = {k: v for k, v in preds.items() if k in labels}
    labels = restrict(preds, labels, results, annotations, "example", subset)
    if not labels:
        raise ValueError(f"{results}: no prediction for an example of {annotations}")
    return {**nlvr2_scores(preds, labels).to_dict(), "n": len(labels)}


def score_rxr(results: Path, instructions: Path, connectivity: Path, subset: bool = False) -> dict[str, Any]:
    """SR, SPL, nDTW, sDTW, CLS (+ TL, NE, OSR) as CLIP-ViL's RxR evaluation: repeated viewpoints are not
    merged before DTW; instr_id is the RxR instruction_id (every language of the file)."""
    items = read_rxr(instructions)
    graphs = load_nav_graphs(connectivity, sorted({it.scan for it in items}))
    refs = {it.instr_id: it for it in items}
    traj = {str(k): v for k, v in _results(results, ("instr_id", "trajectory")).items()}
    refs = restrict(traj, refs, results, instructions, "instruction", subset)
    distances = {scan: shortest_distances(g) for scan, g in graphs.items()}
    return {**navigation_scores(traj, refs, distances, merge_repeats=False).to_dict(), "n": len(refs)}
