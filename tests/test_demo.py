"""The embedded demo end to end (slow: extraction + training on the CPU)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from clipvil.apps.demo import DemoConfig, run_demo


@pytest.mark.slow
def test_demo_beats_the_majority_baseline(tmp_path: Path) -> None:
    summary = run_demo(DemoConfig(out=tmp_path, images=300, overrides=("train.epochs=6",)))
    assert summary["accuracy"] > summary["majority_baseline"] + 10
    assert "RANDOM" in summary["weights"]
    saved = json.loads((tmp_path / "demo_result.json").read_text())
    assert saved["accuracy"] == summary["accuracy"]
    again = run_demo(DemoConfig(out=tmp_path, images=300, overrides=("train.epochs=6",)))  # resumes: no rework
    assert again["images_extracted"] == 0 and again["accuracy"] == summary["accuracy"]
