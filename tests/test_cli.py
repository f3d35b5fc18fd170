"""`clipvil` as a new user meets it: --version, help on every option, and one-line errors for plain mistakes."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

import clipvil
from clipvil.cli import build_parser, main

REPO = Path(__file__).resolve().parents[1]
TINY = REPO / "tests/configs/vqa_tiny.yaml"
PREDICT = ["predict", "--checkpoint", "c.pt", "--image", "i.jpg", "--question", "q"]


def _error(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    code = main(argv)
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    return err


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0 and capsys.readouterr().out.strip() == f"clipvil {clipvil.__version__}"


def test_every_option_of_every_command_has_help() -> None:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    missing = [f"{name} {action.dest}" for name, command in sub.choices.items() for action in command._actions
               if not isinstance(action, argparse._HelpAction) and not action.help]
    assert missing == []
    assert "[key.sub=value ...]" in sub.choices["train"].format_usage()  # overrides shown as optional


def test_a_file_where_a_directory_is_expected_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    afile = tmp_path / "a.txt"
    afile.write_text("x")
    assert "--out" in _error(capsys, ["make-data", "--out", str(afile), "--images", "2"])
    assert "--out" in _error(capsys, ["extract", "--encoder", "RN50", "--images", str(tmp_path), "--out", str(afile)])
    err = _error(capsys, ["train", str(TINY), f"out_dir={afile}", f"task.features={tmp_path}"])
    assert "out_dir" in err and "not a directory" in err


@pytest.mark.parametrize(("argv", "needle"), [
    (["extract", "--encoder", "RN50", "--images", ".", "--out", "x", "--batch-size", "0"], "--batch-size must be >= 1"),
    ([*PREDICT, "--top-k", "0"], "--top-k must be >= 1"),
    ([*PREDICT, "--top-k", "-3"], "--top-k must be >= 1"),
])
def test_bad_numbers_name_the_option(argv: list[str], needle: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main(argv)
    assert done.value.code == 2 and needle in capsys.readouterr().err


def test_task_mistakes_are_one_line(vqa_world: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base = ["train", str(TINY), f"task.data_dir={vqa_world / 'world/vqa'}", f"task.features={vqa_world / 'store'}"]
    err = _error(capsys, [*base, f"out_dir={tmp_path / 'a'}", "task.model_overrides.nonexistent=3"])
    assert "task.model_overrides" in err and "nonexistent" in err
    err = _error(capsys, [*base, f"out_dir={tmp_path / 'b'}", "task.feature_key='{bar}/{stem}'"])
    assert "task.feature_key" in err and "bar" in err
    err = _error(capsys, [*base, f"out_dir={tmp_path / 'c'}", "task.model=nope"])
    assert "unknown model 'nope'" in err and "mcan" in err
    err = _error(capsys, ["predict", "--checkpoint", str(tmp_path / "none.pt"), "--image", str(TINY),
                          "--question", "q"])
    assert "none.pt" in err
