"""Test-server files from evaluation: the VQA task writes vqa_submission.json for a split without annotations
(every test2015 question, in file order) and refuses a split the server would not take (test-dev2015 alone).

The GQA server file comes from `clipvil.data.submission.write_gqa_submission` (tested in
tests/data/test_data_submission.py); the future GQA fine-tuning task calls it from its evaluate as
    write_gqa_submission(out_dir / "gqa_submission.json", {question_id: answer}, <submission_all_questions.json>)
— the last test here runs that call on an answer-less questions file like submission_all_questions.json."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from clipvil.data.submission import write_gqa_submission
from clipvil.engine import load_config
from clipvil.engine.builders import build_task
from clipvil.engine.evaluate import run_evaluation

REPO = Path(__file__).resolve().parents[3]
TINY = REPO / "tests/configs/vqa_tiny.yaml"


@pytest.fixture
def data_dir(vqa_world: Path, tmp_path: Path) -> Path:
    """A copy of the synthetic VQA files plus a test-dev2015 questions file (the first 10 test2015 questions)."""
    out = tmp_path / "vqa"
    shutil.copytree(vqa_world / "world/vqa", out)
    test = json.loads((out / "v2_OpenEnded_mscoco_test2015_questions.json").read_text())
    dev = {**test, "data_subtype": "test-dev2015", "questions": test["questions"][:10]}
    (out / "v2_OpenEnded_mscoco_test-dev2015_questions.json").write_text(json.dumps(dev))
    return out


def _evaluate(data_dir: Path, store: Path, tmp_path: Path, split: str, *extra: str) -> dict:
    cfg = load_config(TINY, [f"task.data_dir={data_dir}", f"task.features={store}", f"out_dir={tmp_path / 'run'}",
                             "task.splits.test=test2015", "task.splits.testdev=test-dev2015", *extra])
    task = build_task(cfg, torch.device("cpu"))  # untrained weights: the answers do not matter here
    return run_evaluation(task, task.dataset(split), split, cfg, torch.device("cpu"), tmp_path / "eval")


def test_test_split_writes_the_server_file(data_dir: Path, vqa_world: Path, tmp_path: Path) -> None:
    metrics = _evaluate(data_dir, vqa_world / "store", tmp_path, "test")
    assert metrics["n_questions"] == 30 and metrics["accuracy"] != metrics["accuracy"]  # NaN: no annotations
    questions = json.loads((data_dir / "v2_OpenEnded_mscoco_test2015_questions.json").read_text())["questions"]
    rows = json.loads((tmp_path / "eval/vqa_submission.json").read_text())
    assert [r["question_id"] for r in rows] == [q["question_id"] for q in questions]  # all, in file order
    vocab = set(json.loads((tmp_path / "run/answer_vocab.json").read_text()))
    assert all(set(r) == {"question_id", "answer"} and r["answer"] in vocab for r in rows)
    results = {r["question_id"]: r["answer"] for r in json.loads((tmp_path / "eval/vqa_results.json").read_text())}
    assert results == {r["question_id"]: r["answer"] for r in rows}


def test_test_dev_alone_is_refused(data_dir: Path, vqa_world: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"split 'testdev': .*test-dev2015 questions file; the VQA server needs "
                                         r"answers for all of test2015"):
        _evaluate(data_dir, vqa_world / "store", tmp_path, "testdev")
    assert (tmp_path / "eval/vqa_results.json").is_file() and not (tmp_path / "eval/vqa_submission.json").exists()
    metrics = _evaluate(data_dir, vqa_world / "store", tmp_path, "testdev", "task.submission=false")
    assert metrics["n_questions"] == 10 and not (tmp_path / "eval/vqa_submission.json").exists()


def test_val_split_writes_no_submission(data_dir: Path, vqa_world: Path, tmp_path: Path) -> None:
    metrics = _evaluate(data_dir, vqa_world / "store", tmp_path, "val")
    assert 0.0 <= metrics["accuracy"] <= 100.0 and not (tmp_path / "eval/vqa_submission.json").exists()


def test_gqa_writer_on_an_answerless_submission_file(tmp_path: Path) -> None:
    questions = {"201": {"imageId": "n1", "question": "Is it red?"},
                 "107": {"imageId": "n2", "question": "What is it?"}}  # no answers: submission_all_questions
    (tmp_path / "submission_all_questions.json").write_text(json.dumps(questions))
    n = write_gqa_submission(tmp_path / "gqa_submission.json", {"107": "cup", "201": "yes"},
                             tmp_path / "submission_all_questions.json")
    assert n == 2 and json.loads((tmp_path / "gqa_submission.json").read_text()) == [
        {"questionId": "201", "prediction": "yes"}, {"questionId": "107", "prediction": "cup"}]
    with pytest.raises(ValueError, match=r"1 of 2 questions of .* have no prediction, e.g. question ids \['201'\]"):
        write_gqa_submission(tmp_path / "again.json", {"107": "cup"}, tmp_path / "submission_all_questions.json")
