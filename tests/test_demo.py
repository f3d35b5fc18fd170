"""The embedded demo end to end (slow: pre-training, extraction and two trainings on the CPU)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from clipvil.apps.demo import DemoConfig, run_demo


@pytest.mark.slow
def test_demo_beats_the_majority_baseline_and_caches_every_step(tmp_path: Path) -> None:
    cfg = DemoConfig(out=tmp_path, images=300, overrides=("train.epochs=6",))
    summary = run_demo(cfg)
    assert summary["accuracy"] > summary["majority_baseline"] + 10  # the CLIP-pretrained tower's grids
    assert summary["random_tower_accuracy"] is not None and "RANDOM" in summary["random_weights"]
    assert summary["clip_pretraining"]["pretrained_here"] and Path(summary["weights"]).is_file()
    saved = json.loads((tmp_path / "demo_result.json").read_text())
    assert saved["accuracy"] == summary["accuracy"] and set(saved["columns"]) == {"clip", "random", "majority"}
    exported = Path(summary["weights"]).stat().st_mtime_ns
    again = run_demo(cfg)  # resumes: no rework (pre-training cached, nothing extracted, training done)
    assert again["images_extracted"] == 0 and again["accuracy"] == summary["accuracy"]
    assert Path(again["weights"]).stat().st_mtime_ns == exported
