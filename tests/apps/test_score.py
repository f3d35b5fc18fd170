"""`clipvil score` on the real samples in ../shared/data, each with an outcome derived by hand."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from clipvil.data.gqa import read_gqa
from clipvil.data.nav import read_r2r
from clipvil.data.snli_ve import read_snli_ve

REPO = Path(__file__).resolve().parents[2]


def _score(*args: str) -> dict:
    out = subprocess.run([sys.executable, "-m", "clipvil.cli", "score", *args], capture_output=True, text=True,
                         env={"PYTHONPATH": str(REPO / "src"), "PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_score_vqa(shared_data: Path, tmp_path: Path) -> None:
    # q0: "net" is 7 of 10 answers → 100; q1: "catcher" 1 of 10 → 30; q2: all 10 say "orange", so the official
    # code skips normalisation and "Orange." matches none → 0. Overall (100 + 30 + 0) / 3.
    res = tmp_path / "res.json"
    res.write_text(json.dumps([{"question_id": 458752000, "answer": "net"},
                               {"question_id": 458752001, "answer": "catcher"},
                               {"question_id": 458752002, "answer": "Orange."}]))
    d = shared_data / "allennlp-models/vqav2"
    scores = _score("vqa", str(res), str(d / "annotations.json"), str(d / "questions.json"))
    assert scores["overall"] == 43.33  # the official 2-decimal number of 130 / 3


def test_score_vqa_missing_prediction_is_named(shared_data: Path, tmp_path: Path) -> None:
    res = tmp_path / "res.json"
    res.write_text(json.dumps([{"question_id": 458752000, "answer": "net"}]))
    d = shared_data / "allennlp-models/vqav2"
    out = subprocess.run([sys.executable, "-m", "clipvil.cli", "score", "vqa", str(res), str(d / "annotations.json"),
                          str(d / "questions.json")], capture_output=True, text=True,
                         env={"PYTHONPATH": str(REPO / "src"), "PATH": "/usr/bin:/bin"})
    assert out.returncode == 2 and "458752001" in out.stderr


def test_score_gqa_and_snli_ve(shared_data: Path, tmp_path: Path) -> None:
    gqa = shared_data / "allennlp-models/gqa/questions.json"
    qs = read_gqa(gqa).questions
    preds = [{"questionId": q.question_id, "prediction": q.answer} for q in qs]
    preds[0]["prediction"] = "definitely wrong"
    (tmp_path / "gqa.json").write_text(json.dumps(preds))
    assert _score("gqa", str(tmp_path / "gqa.json"), str(gqa))["accuracy"] == pytest.approx(100 * (len(qs) - 1) / len(qs))
    ve = shared_data / "allennlp-models/visual_entailment/sample_pairs.jsonl"
    pairs = read_snli_ve(ve).pairs
    flip = {"entailment": "contradiction", "contradiction": "neutral", "neutral": "entailment"}
    rows = [{"pairID": p.pair_id, "label": flip[p.label] if i < 2 else p.label} for i, p in enumerate(pairs)]
    (tmp_path / "ve.json").write_text(json.dumps(rows))
    ve_scores = _score("snli-ve", str(tmp_path / "ve.json"), str(ve))
    assert ve_scores["accuracy"] == pytest.approx(100 * (len(pairs) - 2) / len(pairs))


def test_score_caption_with_a_reference_as_candidate(shared_data: Path, tmp_path: Path) -> None:
    """A candidate identical to one of its references has every n-gram precision 1 and no brevity penalty."""
    refs_file = shared_data / "coco-caption/derived/coco_karpathy_test_gt.json"
    gt = json.loads(refs_file.read_text())
    first: dict[int, str] = {}
    for ann in gt["annotations"]:
        first.setdefault(ann["image_id"], ann["caption"])
    rows = [{"image_id": i, "caption": c} for i, c in list(first.items())[:25]]
    (tmp_path / "caps.json").write_text(json.dumps(rows))
    scores = _score("caption", str(tmp_path / "caps.json"), str(refs_file), "--no-meteor", "--subset")
    assert scores["n"] == 25 and scores["subset"] is True
    assert scores["Bleu_4"] == pytest.approx(1.0, abs=1e-6) and scores["ROUGE_L"] > 0.9
    assert scores["CIDEr"] > 1.0


def test_score_r2r_ground_truth_paths(shared_data: Path, tmp_path: Path) -> None:
    split = shared_data / "r2r/R2R_val_seen.json"
    sub = tmp_path / "R2R_sub.json"
    sub.write_text(json.dumps(json.loads(split.read_text())[:4]))  # 4 paths, 3 instructions each
    items = read_r2r(sub)
    rows = [{"instr_id": it.instr_id, "trajectory": [[vp, 0.0, 0.0] for vp in it.path]} for it in items]
    (tmp_path / "traj.json").write_text(json.dumps(rows))
    scores = _score("r2r", str(tmp_path / "traj.json"), str(sub), str(shared_data / "clip-vil/connectivity"))
    assert scores["sr"] == pytest.approx(1.0) and scores["spl"] == pytest.approx(1.0)
    assert scores["ne"] == pytest.approx(0.0) and scores["ndtw"] == pytest.approx(1.0)
