"""VQA v2 reader: the real AllenNLP sample, the test-split form, and every error / warning case."""

from __future__ import annotations

import json
import logging
import re
from collections import Counter
from pathlib import Path

import pytest

from clipvil.data import DataFormatError, coco_image_filename, coco_image_id, read_vqa


@pytest.fixture
def vqa_dir(shared_data: Path) -> Path:
    return shared_data / "allennlp-models" / "vqav2"


def _questions(*entries: dict, subtype: str = "val2014") -> dict:
    return {
        "info": {},
        "task_type": "Open-Ended",
        "data_type": "mscoco",
        "data_subtype": subtype,
        "license": {},
        "questions": list(entries),
    }


def _annotation(qid: int, image_id: int, answers: list[str], **extra: object) -> dict:
    ann = {
        "question_id": qid,
        "image_id": image_id,
        "question_type": "what color is the",
        "answer_type": "other",
        "multiple_choice_answer": Counter(answers).most_common(1)[0][0] if answers else "",
        "answers": [
            {"answer": a, "answer_confidence": "yes", "answer_id": i + 1} for i, a in enumerate(answers)
        ],
    }
    ann.update(extra)
    return ann


Q1 = {"image_id": 262148, "question": "Where is he looking?", "question_id": 262148000}
Q2 = {
    "image_id": 262148,
    "question": "What are the people in the background doing?",
    "question_id": 262148001,
}
TEN = ["down"] * 6 + ["at table"] * 2 + ["skateboard", "table"]


def test_real_sample_joined_by_question_id(vqa_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    raw_q = json.loads((vqa_dir / "questions.json").read_text())["questions"]
    raw_a = {
        a["question_id"]: [x["answer"] for x in a["answers"]]
        for a in json.loads((vqa_dir / "annotations.json").read_text())["annotations"]
    }
    with caplog.at_level(logging.WARNING, logger="clipvil.data"):
        split = read_vqa(vqa_dir / "questions.json", vqa_dir / "annotations.json")
    assert split.data_subtype == "train2014" and split.has_answers
    assert [ex.question_id for ex in split.examples] == [q["question_id"] for q in raw_q]
    ex = split.examples[1]
    assert (ex.question_id, ex.image_id, ex.question) == (
        458752001,
        458752,
        "What position is this man playing?",
    )
    for ex in split.examples:
        assert list(ex.answers) == raw_a[ex.question_id] and len(ex.answers) == 10
    # the sample's annotations are trimmed to question_id + answers: kept, counted, and logged
    assert split.warnings == {
        "annotation without question_type": 3,
        "annotation without answer_type": 3,
        "annotation without multiple_choice_answer": 3,
    }
    assert "3 x annotation without multiple_choice_answer" in caplog.text
    # the multiple-choice answer falls back to the most frequent human answer
    assert [ex.multiple_choice_answer for ex in split.examples] == ["net", "pitcher", "orange"]


def test_image_filename_names_a_real_image(vqa_dir: Path, shared_data: Path) -> None:
    split = read_vqa(vqa_dir / "questions.json")
    name = split.image_filename(split.examples[0].image_id)
    assert name == "COCO_train2014_000000458752.jpg"
    assert (shared_data / "allennlp-models" / "images" / "vqav2" / name).is_file()
    assert coco_image_id(name) == 458752
    assert coco_image_filename("val2014", 262148) == "COCO_val2014_000000262148.jpg"
    with pytest.raises(ValueError, match="not a COCO image file name"):
        coco_image_id("n578564.jpg")


def test_questions_only_split(vqa_dir: Path) -> None:
    split = read_vqa(vqa_dir / "questions.json")
    assert not split.has_answers and split.warnings == {}
    assert all(ex.answers is None and ex.multiple_choice_answer is None for ex in split.examples)


def test_test_dev_images_live_in_test2015(write_json) -> None:
    q = write_json("q.json", _questions(Q1, subtype="test-dev2015"))
    split = read_vqa(q)
    assert split.image_split == "test2015"
    assert split.image_filename(262148) == "COCO_test2015_000000262148.jpg"


def test_full_annotation_fields(write_json) -> None:
    q = write_json("q.json", _questions(Q1))
    a = write_json(
        "a.json", {"data_subtype": "val2014", "annotations": [_annotation(262148000, 262148, TEN)]}
    )
    split = read_vqa(q, a, image_ids={262148})
    ex = split.examples[0]
    assert ex.answers == tuple(TEN) and ex.multiple_choice_answer == "down"
    assert (ex.question_type, ex.answer_type) == ("what color is the", "other")
    assert split.warnings == {}


def test_blank_and_short_answers_are_counted_not_dropped(write_json) -> None:
    q = write_json("q.json", _questions(Q1, Q2))
    a = write_json(
        "a.json",
        {
            "annotations": [
                _annotation(262148000, 262148, ["  "] + TEN[1:]),
                _annotation(262148001, 262148, ["skating", "skating", "skating"]),
            ]
        },
    )
    split = read_vqa(q, a)
    assert split.warnings == {"blank human answer": 1, "not 10 human answers": 1}
    assert split.examples[0].answers[0] == "  " and len(split.examples[1].answers) == 3


ERRORS = [
    # (questions, annotations or None, image_ids, expected message after "<file>: ")
    ([{"image_id": 1, "question_id": 5}], None, None, "q.json: question 5: missing field 'question'"),
    ([{"image_id": 1, "question": "What?"}], None, None, "q.json: questions[0]: missing field 'question_id'"),
    (
        [{"image_id": 1, "question": "   ", "question_id": 5}],
        None,
        None,
        "q.json: question 5: empty question",
    ),
    (
        [{"image_id": 1, "question": "What?", "question_id": "5"}],
        None,
        None,
        "q.json: questions[0]: field 'question_id' must be int, got str '5'",
    ),
    (
        [Q1, dict(Q1)],
        None,
        None,
        "q.json: question 262148000: duplicate question id 262148000 (at questions[1]; first at questions[0])",
    ),
    (
        [Q1],
        None,
        {1, 2},
        "q.json: question 262148000: unknown image id 262148 (not in the given image-id set)",
    ),
    (
        [Q1],
        [_annotation(262148000, 999, TEN)],
        None,
        "a.json: question 262148000: image id 999 differs from the question's image id 262148",
    ),
    (
        [Q1],
        [_annotation(262148000, 262148, TEN), _annotation(262148000, 262148, TEN)],
        None,
        ("a.json: question 262148000: duplicate annotation for question id 262148000 "
         "(at annotations[1]; first at annotations[0])"),
    ),
    (
        [Q1],
        [_annotation(262148000, 262148, TEN), _annotation(7, 262148, TEN)],
        None,
        "a.json: question 7: annotation for a question id that is not in the questions file",
    ),
    (
        [Q1, Q2],
        [_annotation(262148000, 262148, TEN)],
        None,
        "a.json: 1 question(s) have no annotation, e.g. [262148001]",
    ),
    ([Q1], [_annotation(262148000, 262148, [])], None, "a.json: question 262148000: no human answers"),
    ([Q1], [{"question_id": 262148000}], None, "a.json: question 262148000: missing field 'answers'"),
    (
        [Q1],
        [{"question_id": 262148000, "answers": [{"answer": "a"}, {"answer_id": 2}]}],
        None,
        "a.json: question 262148000: answers[1]: missing field 'answer'",
    ),
]


@pytest.mark.parametrize(("questions", "annotations", "image_ids", "message"), ERRORS)
def test_errors_name_file_and_entry(write_json, questions, annotations, image_ids, message) -> None:
    q = write_json("q.json", _questions(*questions))
    a = None if annotations is None else write_json("a.json", {"annotations": annotations})
    with pytest.raises(DataFormatError) as info:
        read_vqa(q, a, image_ids=image_ids)
    assert str(info.value).endswith(message)
    assert str(info.value).startswith(str(q.parent))


def test_file_level_errors(write_json, tmp_path: Path) -> None:
    q = write_json("q.json", _questions(Q1))
    with pytest.raises(
        DataFormatError,
        match=re.escape("a.json: data_subtype 'train2014' differs from the questions file's 'val2014'"),
    ):
        read_vqa(q, write_json("a.json", {"data_subtype": "train2014", "annotations": []}))
    with pytest.raises(DataFormatError, match=r"bad\.json: invalid JSON at line 1 column 16"):
        read_vqa(write_json("bad.json", '{"questions": [}'))
    with pytest.raises(DataFormatError, match=r"noq\.json: missing field 'questions'"):
        read_vqa(write_json("noq.json", {"data_subtype": "val2014"}))
    with pytest.raises(FileNotFoundError, match="missing.json: no such file"):
        read_vqa(tmp_path / "missing.json")
