"""NLVR2 reader: the real dev file and its balanced subset, the image-name convention, errors and warnings."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from clipvil.data.nlvr2 import parse_identifier, read_nlvr2
from clipvil.data.validate import DataFormatError


def _line(identifier: str = "dev-1-0-0", sentence: str = "There are two dogs.", label: object = "True",
          **extra: object) -> dict:
    return {"identifier": identifier, "sentence": sentence, "label": label,
            "left_url": "http://a/l.jpg", "right_url": "http://a/r.jpg", **extra}


def _jsonl(write_json, *lines: dict | str, name: str = "dev.json") -> Path:
    return write_json(name, "\n".join(x if isinstance(x, str) else json.dumps(x) for x in lines) + "\n")


def test_real_dev_file(shared_data: Path) -> None:
    path = shared_data / "nlvr2" / "dev.json"
    raw = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    n_true = sum(1 for r in raw if r["label"] == "True")
    n_false = sum(1 for r in raw if r["label"] == "False")
    split = read_nlvr2(path)
    assert len(split.examples) == len(raw) == 6982 and split.warnings == {}
    assert n_true + n_false == 6982
    assert sum(e.label is True for e in split.examples) == n_true
    assert sum(e.label is False for e in split.examples) == n_false
    first = split.examples[0]
    assert (first.identifier, first.label, first.sentence) == ("dev-850-0-0", False, raw[0]["sentence"])
    assert (first.left_url, first.right_url) == (raw[0]["left_url"], raw[0]["right_url"])
    assert (first.left_image, first.right_image) == ("dev-850-0-img0.png", "dev-850-0-img1.png")
    assert first.sentence_key == "dev-850--0" and first.parts == ("dev", "850", "0", "0")
    # the second line is the same sentence with another pair of the set
    assert split.examples[1].identifier == "dev-850-2-0" and split.examples[1].sentence_key == "dev-850--0"
    assert split.labels() == {r["identifier"]: r["label"] == "True" for r in raw}


def test_real_balanced_subset(shared_data: Path) -> None:
    path = shared_data / "nlvr2" / "balanced_dev.json"
    raw = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    split = read_nlvr2(path)
    assert len(split.examples) == len(raw) == 2300
    # balanced: the subset keeps pairs that occur with both labels, so half are true
    assert sum(e.label for e in split.examples) == sum(r["label"] == "True" for r in raw) == 1150
    dev = {e.identifier for e in read_nlvr2(shared_data / "nlvr2" / "dev.json").examples}
    assert {e.identifier for e in split.examples} <= dev


def test_labels_any_case_and_unlabelled(write_json) -> None:
    path = _jsonl(write_json, _line("dev-1-0-0", label="true"), _line("dev-1-1-0", label="FALSE"),
                  _line("dev-1-2-0", label=True))
    assert [e.label for e in read_nlvr2(path).examples] == [True, False, True]
    line = _line("test1-3-0-1")
    del line["label"]
    path = _jsonl(write_json, line, name="test1.json")
    with pytest.raises(DataFormatError, match=r"test1.json: line 1: example test1-3-0-1: missing field 'label'"):
        read_nlvr2(path)
    split = read_nlvr2(path, require_labels=False)
    assert split.examples[0].label is None and not split.has_labels
    with pytest.raises(ValueError, match="1 example"):
        split.labels()


@pytest.mark.parametrize(
    ("line", "message"),
    [
        (_line("dev-1-0"), r"line 2: example dev-1-0: identifier 'dev-1-0' is not of the form"),
        (_line("dev-x-0-0"), r"identifier 'dev-x-0-0' is not of the form"),
        (_line(label="yes"), r"line 2: example dev-1-0-0: field 'label': label 'yes' is not true or false"),
        (_line(sentence="  "), r"line 2: example dev-1-0-0: empty sentence"),
        (_line(sentence=3), r"field 'sentence' must be str"),
        (_line(left_url=5), r"field 'left_url' must be str"),
        ({"sentence": "x", "label": "True"}, r"line 2: missing field 'identifier'"),
        ("{not json", r"line 2: invalid JSON"),
    ],
)
def test_errors_name_file_and_line(write_json, line: dict | str, message: str) -> None:
    path = _jsonl(write_json, _line("dev-9-0-0"), line)
    with pytest.raises(DataFormatError, match=message):
        read_nlvr2(path)


def test_duplicate_identifier(write_json) -> None:
    path = _jsonl(write_json, _line(), _line("dev-1-1-0"), _line())
    with pytest.raises(DataFormatError, match=r"line 3: example dev-1-0-0: duplicate identifier .*first at line 1"):
        read_nlvr2(path)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no such file"):
        read_nlvr2(tmp_path / "nope.json")


def test_warnings_are_counted(write_json, caplog: pytest.LogCaptureFixture) -> None:
    path = _jsonl(write_json, _line("dev-1-0-0", "A dog."), _line("dev-1-1-0", "A cat."),
                  _line("train-2-0-1", "A cow."))
    with caplog.at_level(logging.WARNING, logger="clipvil.data"):
        split = read_nlvr2(path)
    assert len(split.examples) == 3
    assert split.warnings == {
        "sentence differs within a sentence group": 1,
        "identifiers of several splits in one file": 1,
    }
    assert "dev-1-1-0" in caplog.text


def test_parse_identifier() -> None:
    assert parse_identifier("test1-0-1-0") == ("test1", "0", "1", "0")
    with pytest.raises(ValueError, match="split-set_id-pair_id-sentence_id"):
        parse_identifier("dev-1-0-0-img0")
