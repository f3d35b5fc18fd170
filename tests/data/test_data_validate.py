"""Shared validation helpers: message layout, type checks, JSON errors, counted warnings."""

from __future__ import annotations

import gc
import logging
from pathlib import Path

import pytest

from clipvil.data.validate import (
    DataFormatError,
    WarningCounter,
    check_new,
    expect_type,
    get_field,
    iter_jsonl,
    load_json,
    no_gc,
    optional_field,
)


def test_error_messages_name_file_and_entry() -> None:
    with pytest.raises(DataFormatError, match=r"^q\.json: question 3: missing field 'question'$"):
        get_field({"image_id": 1}, "question", "q.json", "question 3", str)
    with pytest.raises(DataFormatError, match=r"^q\.json: expected a JSON object, got list$"):
        get_field([1], "questions", "q.json", None, list)
    assert issubclass(DataFormatError, ValueError)


def test_type_checks() -> None:
    assert expect_type(3, int, "f", None, "x") == 3
    with pytest.raises(DataFormatError, match="x must be int, got bool True"):
        expect_type(True, int, "f", None, "x")  # JSON true is not an id
    assert expect_type(3, (str, int), "f", None, "x") == 3
    with pytest.raises(DataFormatError, match="x must be str or int, got float 1.5"):
        expect_type(1.5, (str, int), "f", None, "x")
    assert optional_field({"a": None}, "a", "f", None, str) is None
    assert optional_field({}, "a", "f", None, str) is None
    with pytest.raises(DataFormatError, match="f: e: field 'a' must be str, got int 1"):
        optional_field({"a": 1}, "a", "f", "e", str)


def test_duplicates_name_both_positions() -> None:
    seen: dict[int, str] = {}
    check_new(seen, 7, "f.json", "question 7", "question id", "questions[0]")
    with pytest.raises(
        DataFormatError,
        match=r"^f\.json: question 7: duplicate question id 7 \(at questions\[4\]; first at questions\[0\]\)$",
    ):
        check_new(seen, 7, "f.json", "question 7", "question id", "questions[4]")


def test_json_errors(write_json, tmp_path: Path) -> None:
    with pytest.raises(DataFormatError, match=r"bad\.json: invalid JSON at line 2 column 1"):
        load_json(write_json("bad.json", '{"a": 1,\n}'))
    with pytest.raises(FileNotFoundError, match=r"nope\.json: no such file"):
        load_json(tmp_path / "nope.json")
    lines = write_json("x.jsonl", '{"a": 1}\n\n{"a": 2}\n')
    assert list(iter_jsonl(lines)) == [(1, {"a": 1}), (3, {"a": 2})]


def test_no_gc_restores_state() -> None:
    assert gc.isenabled()
    with no_gc():
        assert not gc.isenabled()
    assert gc.isenabled()
    with pytest.raises(RuntimeError), no_gc():
        raise RuntimeError
    assert gc.isenabled()


def test_warning_counter_counts_and_logs(caplog: pytest.LogCaptureFixture) -> None:
    w = WarningCounter("a.json")
    for qid in range(5):
        w.add("blank human answer", f"question {qid}")
    w.add("not 10 human answers", "question 9")
    with caplog.at_level(logging.WARNING, logger="clipvil.data"):
        counts = w.emit()
    assert counts == {"blank human answer": 5, "not 10 human answers": 1}
    assert w.examples("blank human answer") == ["question 0", "question 1", "question 2"]
    assert caplog.messages == [
        "a.json: 5 x blank human answer (e.g. question 0, question 1, question 2)",
        "a.json: 1 x not 10 human answers (e.g. question 9)",
    ]
