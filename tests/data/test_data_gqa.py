"""GQA reader: the real single-file and directory-of-shards samples, test splits, errors and warnings."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from clipvil.data import DataFormatError, gqa_question_files, read_gqa


@pytest.fixture
def gqa_dir(shared_data: Path) -> Path:
    return shared_data / "allennlp-models" / "gqa"


def _q(image: str = "n1", question: str = "Is the cat black?", **extra: object) -> dict:
    return {"imageId": image, "question": question, **extra}


def test_real_single_file(gqa_dir: Path) -> None:
    raw = json.loads((gqa_dir / "questions.json").read_text())
    split = read_gqa(gqa_dir / "questions.json", require_answers=True)
    assert [q.question_id for q in split.questions] == list(raw)
    q = split.questions[0]
    assert (q.question_id, q.image_id, q.question) == ("202218649", "n578564", raw["202218649"]["question"])
    assert (q.answer, q.full_answer) == ("picture", "The picture is hanging above the chalkboard.")
    assert (q.structural, q.semantic, q.detailed, q.is_balanced) == ("query", "rel", "relS", True)
    assert split.has_answers and split.warnings == {}


def test_real_directory_of_shards(gqa_dir: Path, shared_data: Path) -> None:
    shards = sorted((gqa_dir / "question_dir").glob("*.json"))
    expected = [qid for s in shards for qid in json.loads(s.read_text())]
    split = read_gqa(gqa_dir / "question_dir", image_ids={"n578564", "n166008"})
    assert split.files == tuple(shards)
    assert [q.question_id for q in split.questions] == expected == ["202218649", "20240871"]
    second = split.questions[1]
    assert (second.image_id, second.answer, second.is_balanced, second.structural) == (
        "n166008",
        "yes",
        False,
        "logical",
    )
    for q in split.questions:  # every image id names a real sample image
        assert (shared_data / "allennlp-models" / "images" / "gqa" / f"{q.image_id}.jpg").is_file()


def test_shards_in_natural_order(write_json, tmp_path: Path) -> None:
    for i in (10, 2, 1):
        write_json(f"shards/train_all_questions_{i}.json", {str(i): _q(answer="yes")})
    files = gqa_question_files(tmp_path / "shards")
    assert [f.name for f in files] == [f"train_all_questions_{i}.json" for i in (1, 2, 10)]
    assert [q.question_id for q in read_gqa(tmp_path / "shards").questions] == ["1", "2", "10"]


def test_test_split_without_answers(write_json) -> None:
    path = write_json(
        "submission_all_questions.json", {"7": _q(isBalanced=True), "8": _q("n2", "What is it?")}
    )
    split = read_gqa(path)
    assert [(q.question_id, q.answer, q.full_answer) for q in split.questions] == [
        ("7", None, None),
        ("8", None, None),
    ]
    assert not split.has_answers and split.warnings == {}
    with pytest.raises(
        DataFormatError, match=r"submission_all_questions\.json: question 7: missing field 'answer'"
    ):
        read_gqa(path, require_answers=True)


def test_mixed_answers_are_counted(write_json) -> None:
    path = write_json("q.json", {"1": _q(answer="yes"), "2": _q(), "3": _q()})
    split = read_gqa(path)
    assert split.warnings == {"question without answer in a file with answers": 2}
    assert [q.answer for q in split.questions] == ["yes", None, None]


@pytest.mark.parametrize(
    ("content", "image_ids", "message"),
    [
        ({"5": {"question": "What?"}}, None, "q.json: question 5: missing field 'imageId'"),
        ({"5": _q(question=" ")}, None, "q.json: question 5: empty question"),
        ({"5": _q(answer="")}, None, "q.json: question 5: empty answer"),
        ({"5": _q(image=3)}, None, "q.json: question 5: field 'imageId' must be str, got int 3"),
        ({"5": _q(types="query")}, None, "q.json: question 5: field 'types' must be dict, got str 'query'"),
        (
            {"5": _q(image="n9")},
            {"n1"},
            "q.json: question 5: unknown image id 'n9' (not in the given image-id set)",
        ),
        ({"5": "What?"}, None, "q.json: question 5: expected a JSON object, got str"),
        ([_q()], None, "q.json: expected a JSON object question id -> question, got list"),
    ],
)
def test_errors_name_file_and_question(write_json, content, image_ids, message) -> None:
    path = write_json("q.json", content)
    with pytest.raises(DataFormatError) as info:
        read_gqa(path, image_ids=image_ids)
    assert str(info.value) == f"{path.parent}/{message}"


def test_duplicate_question_ids(write_json, tmp_path: Path) -> None:
    dup = write_json(
        "dup.json", '{"5": {"imageId": "n1", "question": "A?"}, "5": {"imageId": "n2", "question": "B?"}}'
    )
    with pytest.raises(DataFormatError, match=r"dup\.json: question 5: duplicate question id"):
        read_gqa(dup)
    write_json("shards/a_0.json", {"5": _q()})
    second = write_json("shards/a_1.json", {"5": _q()})
    with pytest.raises(DataFormatError) as info:
        read_gqa(tmp_path / "shards")
    assert (
        str(info.value)
        == f"{second}: question 5: duplicate question id (also in {tmp_path / 'shards' / 'a_0.json'})"
    )


def test_missing_paths(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no such file or directory"):
        read_gqa(tmp_path / "nothing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match=r"empty: directory has no \*\.json question shards"):
        read_gqa(tmp_path / "empty")
