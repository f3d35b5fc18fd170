"""LXMERT pre-training JSON and answer table: the real all_ans.json, a small file in LXMERT's layout, errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from clipvil.data import DataFormatError, convert_lxmert_answer, load_lxmert_answer_table, read_lxmert


@pytest.fixture
def all_ans(shared_data: Path) -> Path:
    return shared_data / "clip-vil" / "answer_vocab" / "lxmert" / "all_ans.json"


def test_real_answer_table(all_ans: Path) -> None:
    raw = json.loads(all_ans.read_text())
    full = load_lxmert_answer_table(all_ans)
    assert len(full) == len(raw) and full.answers[:3] == tuple(e["ans"] for e in raw[:3])
    vqa_only = load_lxmert_answer_table(all_ans, qa_sets={"vqa"})
    assert vqa_only.answers == tuple(e["ans"] for e in raw if "vqa" in e["dsets"])
    assert all(vqa_only.ans2id[a] == i for i, a in enumerate(vqa_only.answers))
    gqa_vqa = load_lxmert_answer_table(all_ans, qa_sets=["gqa", "vqa"])
    assert len(gqa_vqa) == sum(1 for e in raw if {"gqa", "vqa"} & set(e["dsets"]))
    with pytest.raises(DataFormatError, match="no answer used by the QA sets"):
        load_lxmert_answer_table(all_ans, qa_sets={"nlvr2"})


@pytest.mark.parametrize(
    ("raw", "converted"),
    [
        ("The Man.", "man"),
        ("a grey", "gray"),
        ("two", "2"),
        ("an apple", "apple"),
        ("", ""),
        ("a the dog", "dog"),
        ("Yes", "yes"),
        ("the", "the"),
    ],
)
def test_convert_answer(raw: str, converted: str) -> None:
    assert convert_lxmert_answer(raw) == converted


def _data() -> list[dict]:
    return [
        {
            "img_id": "COCO_val2014_000000262148",
            "sentf": {
                "mscoco": ["A man rides a skateboard.", "A skater on a ramp."],
                "vqa": ["Where is he looking?", "What is he riding?"],
            },
            "labelf": {
                "vqa": [{"down": 1.0, "at table": 0.6, "zzz-not-an-answer": 0.3}, {"A Skateboard.": 0.9}]
            },
        },
        {"img_id": "2404528", "sentf": {"gqa": ["Is the cat black?"]}, "labelf": {"gqa": [{"yes": 1.0}]}},
    ]


def test_read_small_file(write_json, all_ans: Path) -> None:
    table = load_lxmert_answer_table(all_ans, qa_sets={"vqa", "gqa", "visual7w"})
    path = write_json("mscoco_minival.json", _data())
    data = read_lxmert(path, table)
    assert data.n_images == 2 and data.files == (path,)
    assert [s.uid for s in data.sentences] == [
        "COCO_val2014_000000262148_mscoco_000",
        "COCO_val2014_000000262148_mscoco_001",
        "COCO_val2014_000000262148_vqa_000",
        "COCO_val2014_000000262148_vqa_001",
        "2404528_gqa_000",
    ]
    assert data.sentences[0].labels is None and data.sentences[0].source == "mscoco"
    assert data.sentences[2].labels == {table.ans2id["down"]: 1.0, table.ans2id["at table"]: 0.6}
    assert data.sentences[3].labels == {table.ans2id["skateboard"]: 0.9}  # converted, then looked up
    assert data.sentences[4].labels == {table.ans2id["yes"]: 1.0}
    assert data.warnings == {"label answer not in the answer table (dropped)": 1}


def test_colliding_answers_keep_the_higher_score(write_json, all_ans: Path) -> None:
    table = load_lxmert_answer_table(all_ans)
    entry = {
        "img_id": "1",
        "sentf": {"vqa": ["How many?"]},
        "labelf": {"vqa": [{"2": 0.6, "two": 0.3, "Two.": 0.9}]},
    }
    data = read_lxmert(write_json("d.json", [entry]), table)
    assert data.sentences[0].labels == {table.ans2id["2"]: 0.9}
    assert data.warnings == {"two label answers convert to one (higher score kept)": 2}


def test_several_files_and_duplicates_across_them(write_json, all_ans: Path) -> None:
    table = load_lxmert_answer_table(all_ans)
    a = write_json("a.json", _data()[:1])
    b = write_json("b.json", _data()[1:])
    assert read_lxmert([a, b], table, image_ids={"COCO_val2014_000000262148", "2404528"}).n_images == 2
    c = write_json("c.json", _data()[:1])
    with pytest.raises(DataFormatError) as info:
        read_lxmert([a, c], table)
    assert str(info.value) == f"{c}: image COCO_val2014_000000262148: duplicate img_id (also in {a})"


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        (
            {"img_id": "1", "sentf": {"vqa": ["Q?"]}, "labelf": {"vqa": []}},
            "image 1: source 'vqa': 0 labels for 1 sentences",
        ),
        (
            {"img_id": "1", "sentf": {}, "labelf": {"vqa": []}},
            "image 1: labelf source 'vqa' has no sentences in sentf",
        ),
        (
            {"img_id": "1", "sentf": {"vqa": ["Q?"]}, "labelf": {"vqa": [{"yes": "1"}]}},
            "image 1: vqa sentence 0: score of answer 'yes' must be a finite number, got '1'",
        ),
        ({"img_id": "1", "sentf": {"mscoco": ["A cat.", " "]}}, "image 1: mscoco sentence 1: empty sentence"),
        ({"img_id": "1"}, "image 1: missing field 'sentf'"),
        ({"img_id": "", "sentf": {}}, "entries[0]: empty img_id"),
        ({"sentf": {}}, "entries[0]: missing field 'img_id'"),
    ],
)
def test_errors_name_file_and_entry(write_json, all_ans: Path, entry: dict, message: str) -> None:
    path = write_json("d.json", [entry])
    with pytest.raises(DataFormatError) as info:
        read_lxmert(path, load_lxmert_answer_table(all_ans))
    assert str(info.value) == f"{path}: {message}"


def test_unknown_image(write_json, all_ans: Path) -> None:
    path = write_json("d.json", _data())
    with pytest.raises(DataFormatError, match=r"d\.json: image 2404528: unknown image id '2404528'"):
        read_lxmert(path, load_lxmert_answer_table(all_ans), image_ids={"COCO_val2014_000000262148"})
