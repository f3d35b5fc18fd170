"""Result-file writers: complete files in the servers' formats; refusals name what is missing or unknown."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from clipvil.data import write_gqa_submission, write_vqa_submission


@pytest.fixture
def vqa_questions(write_json) -> Path:
    qs = [{"image_id": 1, "question": f"Q{i}?", "question_id": 1000 + i} for i in range(25)]
    return write_json(
        "v2_OpenEnded_mscoco_test2015_questions.json", {"data_subtype": "test2015", "questions": qs}
    )


def test_vqa_real_sample(shared_data: Path, tmp_path: Path) -> None:
    questions = shared_data / "allennlp-models" / "vqav2" / "questions.json"
    preds = {458752002: "orange", 458752000: "net", 458752001: "pitcher"}
    n = write_vqa_submission(tmp_path / "out" / "vqa_result.json", preds, questions)
    written = json.loads((tmp_path / "out" / "vqa_result.json").read_text())
    assert n == 3
    assert written == [
        {"question_id": 458752000, "answer": "net"},
        {"question_id": 458752001, "answer": "pitcher"},
        {"question_id": 458752002, "answer": "orange"},
    ]  # in the order of the questions file


def test_vqa_refuses_missing_answers(vqa_questions: Path, tmp_path: Path) -> None:
    preds = {1000 + i: "yes" for i in range(25) if i not in (3, 7)}
    out = tmp_path / "result.json"
    with pytest.raises(ValueError) as info:
        write_vqa_submission(out, preds, vqa_questions)
    assert str(info.value) == (
        f"refusing to write: 2 of 25 questions of {vqa_questions} have no answer, "
        "e.g. question ids [1003, 1007]"
    )
    assert not out.exists()


def test_vqa_rejects_unknown_ids_and_non_strings(vqa_questions: Path, tmp_path: Path) -> None:
    preds = {1000 + i: "yes" for i in range(25)}
    with pytest.raises(ValueError, match=r"1 prediction\(s\) for question ids not in .*: \['42'\]"):
        write_vqa_submission(tmp_path / "r.json", {**preds, 42: "no"}, vqa_questions)
    with pytest.raises(ValueError, match=r"25 prediction\(s\) for question ids not in"):  # ids as strings
        write_vqa_submission(tmp_path / "r.json", {str(k): v for k, v in preds.items()}, vqa_questions)
    with pytest.raises(TypeError, match="question 1004: the answer must be a string, got int 2"):
        write_vqa_submission(tmp_path / "r.json", {**preds, 1004: 2}, vqa_questions)
    assert not (tmp_path / "r.json").exists()


def test_vqa_refuses_test_dev_question_file(write_json, tmp_path: Path) -> None:
    q = write_json(
        "test-dev.json",
        {"data_subtype": "test-dev2015", "questions": [{"image_id": 1, "question": "Q?", "question_id": 5}]},
    )
    with pytest.raises(ValueError, match="needs answers for all of test2015 even for a test-dev submission"):
        write_vqa_submission(tmp_path / "r.json", {5: "yes"}, q)


def test_gqa_directory_of_shards(shared_data: Path, tmp_path: Path) -> None:
    questions = shared_data / "allennlp-models" / "gqa" / "question_dir"
    n = write_gqa_submission(tmp_path / "gqa.json", {"20240871": "yes", "202218649": "picture"}, questions)
    assert n == 2
    assert json.loads((tmp_path / "gqa.json").read_text()) == [
        {"questionId": "202218649", "prediction": "picture"},
        {"questionId": "20240871", "prediction": "yes"},
    ]


def test_gqa_refusals(shared_data: Path, tmp_path: Path) -> None:
    questions = shared_data / "allennlp-models" / "gqa" / "question_dir"
    with pytest.raises(
        ValueError, match=r"1 of 2 questions of .* have no prediction, e.g. question ids \['20240871'\]"
    ):
        write_gqa_submission(tmp_path / "g.json", {"202218649": "picture"}, questions)
    with pytest.raises(ValueError, match=r"prediction\(s\) for question ids not in .*\['202218649'\]"):
        write_gqa_submission(tmp_path / "g.json", {202218649: "picture", "20240871": "yes"}, questions)
    assert not (tmp_path / "g.json").exists()
