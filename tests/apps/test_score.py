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
    out = subprocess.run([sys.executable, "-m", "clipvil.cli", "score", *args], capture_output=True, check=False,
                         text=True,
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
                          str(d / "questions.json")], capture_output=True, check=False, text=True,
                         env={"PYTHONPATH": str(REPO / "src"), "PATH": "/usr/bin:/bin"})
    assert out.returncode == 2 and "458752001" in out.stderr


def test_score_gqa_and_snli_ve(shared_data: Path, tmp_path: Path) -> None:
    gqa = shared_data / "allennlp-models/gqa/questions.json"
    qs = read_gqa(gqa).questions
    preds = [{"questionId": q.question_id, "prediction": q.answer} for q in qs]
    preds[0]["prediction"] = "definitely wrong"
    (tmp_path / "gqa.json").write_text(json.dumps(preds))
    expected = 100 * (len(qs) - 1) / len(qs)
    assert _score("gqa", str(tmp_path / "gqa.json"), str(gqa))["accuracy"] == pytest.approx(expected)
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


# ---------------------------------------------------------------- NLVR2 (lil-lab/nlvr dev annotations)


def _cli(capsys: pytest.CaptureFixture[str], *args: str) -> dict:
    """`clipvil score ARGS` in this process (the subprocess start costs seconds on a loaded machine)."""
    from clipvil.cli import main

    assert main(["score", *args]) == 0
    return json.loads(capsys.readouterr().out)


def _cli_error(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    from clipvil.cli import main

    assert main(["score", *args]) == 2
    return capsys.readouterr().err


def _nlvr2_gold(path: Path) -> list[tuple[str, bool]]:
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [(r["identifier"], r["label"] == "True") for r in rows]


def test_score_nlvr2_dev_csv(shared_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    dev = shared_data / "nlvr2/dev.json"
    gold = _nlvr2_gold(dev)
    assert len(gold) == 6982 and len({i.split("-")[1] + "/" + i.split("-")[3] for i, _ in gold}) == 2018
    # dev-850-0-0 and dev-850-2-0 share the sentence group dev-850--0; the last example is in another group
    flipped = {"dev-850-0-0", "dev-850-2-0", gold[-1][0]}
    assert not gold[-1][0].startswith("dev-850-")
    lines = [f"{i},{(not y) if i in flipped else y}" for i, y in gold]
    lines[5] = lines[5].lower()  # the official script compares lower-cased strings: "true" is True
    (tmp_path / "pred.csv").write_text("\n".join(lines) + "\n")
    scores = _cli(capsys, "nlvr2", str(tmp_path / "pred.csv"), str(dev))
    assert scores["accuracy"] == pytest.approx(100 * 6979 / 6982)  # 3 of 6982 wrong
    assert scores["consistency"] == pytest.approx(100 * 2016 / 2018)  # 2 of the 2018 groups have a wrong one
    assert (scores["n_groups"], scores["n_consistent"], scores["n"]) == (2018, 2016, 6982)


def test_score_nlvr2_json_on_the_balanced_subset(shared_data: Path, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    dev, balanced = shared_data / "nlvr2/dev.json", shared_data / "nlvr2/balanced_dev.json"
    sub = _nlvr2_gold(balanced)
    groups = {i.rsplit("-", 2)[0] + "--" + i.rsplit("-", 1)[1] for i, _ in sub}
    wrong = sub[0][0]  # whole-dev predictions, one balanced example wrong
    preds = [{"identifier": i, "prediction": (not y) if i == wrong else y} for i, y in _nlvr2_gold(dev)]
    (tmp_path / "pred.json").write_text(json.dumps(preds))
    scores = _cli(capsys, "nlvr2", str(tmp_path / "pred.json"), str(balanced), "--allow-extra")
    assert scores["n"] == 2300 and scores["accuracy"] == pytest.approx(100 * 2299 / 2300)
    assert scores["consistency"] == pytest.approx(100 * (len(groups) - 1) / len(groups))
    err = _cli_error(capsys, "nlvr2", str(tmp_path / "pred.json"), str(balanced))
    assert str(tmp_path / "pred.json") in err and f"{6982 - 2300} example(s) not in {balanced}" in err


def test_score_nlvr2_errors_name_the_file(shared_data: Path, tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    dev = shared_data / "nlvr2/dev.json"
    gold = _nlvr2_gold(dev)
    bad = tmp_path / "bad.csv"
    bad.write_text("\n".join([f"{i},{y}" for i, y in gold[:3]] + [f"{gold[3][0]},maybe"]))
    assert f"{bad}: line 4: prediction for {gold[3][0]}: 'maybe' is not True or False" in _cli_error(capsys, 
        "nlvr2", str(bad), str(dev))
    short = tmp_path / "short.csv"
    short.write_text("\n".join(f"{i},{y}" for i, y in gold[1:]))
    err = _cli_error(capsys, "nlvr2", str(short), str(dev))
    assert f"{short}: 1 of 6982 examples of {dev} have no result" in err and gold[0][0] in err
    scores = _cli(capsys, "nlvr2", str(short), str(dev), "--subset")  # the 6981 answered, all right
    assert scores["n"] == 6981 and scores["accuracy"] == 100.0 and scores["consistency"] == 100.0


# ---------------------------------------------------------------- GQA: eval.py's metrics from extra files


def _gqa_all_questions(shared_data: Path, tmp_path: Path) -> Path:
    """The two real shards + a hand-made unbalanced question 202218648, entailed by 202218649."""
    root = shared_data / "allennlp-models/gqa/question_dir"
    questions = {**json.loads((root / "questions0.json").read_text()),
                 **json.loads((root / "questions1.json").read_text())}
    questions["202218648"] = {
        "question": "Is there a picture above the chalkboard?", "answer": "yes", "imageId": "n578564",
        "isBalanced": False, "entailed": [], "types": {"structural": "verify", "semantic": "rel",
                                                      "detailed": "existRelS"},
        "groups": {"global": None, "local": "13-chalkboard_picture"},
        "semantic": [{"operation": "select", "dependencies": [], "argument": "chalkboard (0)"},
                     {"operation": "exist", "dependencies": [0], "argument": "?"}],
    }
    path = tmp_path / "testdev_all_questions.json"
    path.write_text(json.dumps(questions))
    return path


def test_score_gqa_full_metrics(shared_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    questions = shared_data / "allennlp-models/gqa/question_dir"  # 202218649 balanced, 20240871 not
    all_q = _gqa_all_questions(shared_data, tmp_path)
    preds = [{"questionId": "202218649", "prediction": "picture"},  # right (balanced, scored)
             {"questionId": "202218648", "prediction": "no"},  # its entailed question, wrong
             {"questionId": "20240871", "prediction": "no"}]  # unbalanced: not scored
    (tmp_path / "pred.json").write_text(json.dumps(preds))
    (tmp_path / "choices.json").write_text(json.dumps(
        {"202218649": {"valid": ["picture", "clock"], "plausible": ["clock"]}}))
    # 202218649's full answer points at objects 12 and 0; a 100x100 image with 12 in the top-left and 0 in the
    # bottom-right quarter; a 2x2 attention map (first index along x) puts 0.7 on 12 and 0.2 on 0 -> 0.9
    (tmp_path / "graphs.json").write_text(json.dumps({"n578564": {"width": 100, "height": 100, "objects": {
        "12": {"x": 0, "y": 0, "w": 50, "h": 50}, "0": {"x": 50, "y": 50, "w": 50, "h": 50}}}}))
    (tmp_path / "att.json").write_text(json.dumps([{"questionId": "202218649", "attention": [[0.7, 0.1],
                                                                                            [0.0, 0.2]]}]))
    (tmp_path / "balanced.json").write_text(json.dumps(preds[:1]))
    alone = _cli(capsys, "gqa", str(tmp_path / "balanced.json"), str(questions))
    assert (alone["accuracy"], alone["open"], alone["distribution"], alone["n"]) == (100.0, 100.0, 0.0, 1)
    assert set(alone["notComputed"]) == {"binary", "validity", "plausibility", "consistency", "grounding"}
    assert "choices" in alone["notComputed"]["validity"] and "all-questions" in alone["notComputed"]["consistency"]
    full = _cli(capsys, "gqa", str(tmp_path / "pred.json"), str(questions), "--choices", str(tmp_path / "choices.json"),
                  "--all-questions", str(all_q),
                  "--attentions", str(tmp_path / "att.json"), "--scene-graphs", str(tmp_path / "graphs.json"),
                  "--map-size", "2")
    assert full["validity"] == 100.0 and full["plausibility"] == 0.0  # "picture" is valid, not plausible
    assert full["consistency"] == 0.0  # right, but its one entailed question is wrong
    assert full["grounding"] == pytest.approx(90.0)
    assert set(full["notComputed"]) == {"binary"} and full["accuracyPerSteps"] == {"2": [100.0, 1]}


def test_score_gqa_errors_name_the_file(shared_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    questions = shared_data / "allennlp-models/gqa/question_dir"
    all_q = _gqa_all_questions(shared_data, tmp_path)
    pred = tmp_path / "pred.json"
    pred.write_text(json.dumps([{"questionId": "202218649", "prediction": "picture"}]))
    choices = tmp_path / "choices.json"
    choices.write_text(json.dumps({"20240871": {"valid": ["yes"], "plausible": ["yes"]}}))
    err = _cli_error(capsys, "gqa", str(pred), str(questions), "--choices", str(choices))
    assert f"{choices}: 1 choices entries missing, e.g. '202218649'" in err
    err = _cli_error(capsys, "gqa", str(pred), str(questions), "--all-questions", str(all_q))
    assert f"{pred}: 1 predictions for entailed questions" in err and "'202218648'" in err
    pred.write_text(json.dumps([{"questionId": "202218649", "prediction": "picture"},
                                {"questionId": "999", "prediction": "x"}]))
    assert f"{pred}: 1 question(s) not in {all_q}" in _cli_error(capsys, "gqa", str(pred), str(questions),
                                                                   "--all-questions", str(all_q))


def _score_error(*args: str) -> str:
    import contextlib
    import io

    from clipvil.cli import main

    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        code = main(["score", *args])
    text = err.getvalue().strip()
    assert code == 2 and len(text.splitlines()) == 1 and "Traceback" not in text, text
    return text


def test_score_errors_name_the_results_file(shared_data: Path, tmp_path: Path) -> None:
    d = shared_data / "allennlp-models/vqav2"
    refs = [str(d / "annotations.json"), str(d / "questions.json")]
    truncated = tmp_path / "truncated.json"
    truncated.write_text('[{"question_id": 458752000, "answer": "net"}, {"question_id": 4587')
    err = _score_error("vqa", str(truncated), *refs)
    assert str(truncated) in err and "not valid JSON" in err and "truncated" in err
    jpeg = tmp_path / "photo.json"
    jpeg.write_bytes((shared_data / "allennlp-models/images/gqa/n578564.jpg").read_bytes())
    err = _score_error("vqa", str(jpeg), *refs)
    assert str(jpeg) in err and "not UTF-8 text" in err
    wrapped = tmp_path / "wrapped.json"
    wrapped.write_text(json.dumps({"results": [{"question_id": 458752000, "answer": "net"}]}))
    err = _score_error("vqa", str(wrapped), *refs)
    assert str(wrapped) in err and "JSON list" in err and "results" in err


def test_unknown_ids_are_refused_everywhere_and_subsets_are_explicit(shared_data: Path, tmp_path: Path) -> None:
    gqa = shared_data / "allennlp-models/gqa/questions.json"
    qids = list(json.loads(gqa.read_text()))
    res = tmp_path / "gqa.json"
    res.write_text(json.dumps([{"questionId": qids[0], "prediction": "yes"},
                               {"questionId": "no-such-question", "prediction": "no"}]))
    err = _score_error("gqa", str(res), str(gqa))
    assert "no-such-question" in err and str(res) in err
    res.write_text(json.dumps([{"questionId": qids[0], "prediction": "yes"}]))
    if len(qids) > 1:
        assert "--subset" in _score_error("gqa", str(res), str(gqa))
        scored = _score("gqa", str(res), str(gqa), "--subset")
        assert scored["n"] == 1 and scored["subset"] is True
