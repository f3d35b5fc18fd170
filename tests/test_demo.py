"""The embedded demo end to end (slow: extraction of three towers and six trainings on the CPU)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from clipvil.apps.demo import DemoConfig, run_demo, tower_weights
from clipvil.encoders.shipped import shipped_names


def test_the_demo_compares_the_shipped_towers_by_default() -> None:
    names = shipped_names()
    weights = tower_weights(DemoConfig())
    assert list(weights) == ["clip", "imagenet", "random"] and weights["random"] is None
    assert {weights["clip"], weights["imagenet"]} <= set(names)
    assert "imagenet" not in tower_weights(DemoConfig(weights=Path("ViT-B-32.pt"), encoder="ViT-B-32"))
    with pytest.raises(ValueError, match="no shipped CLIP of this architecture"):
        tower_weights(DemoConfig(encoder="ViT-B-32"))


@pytest.mark.slow
def test_demo_trains_every_tower_and_seed_and_caches_every_step(tmp_path: Path) -> None:
    cfg = DemoConfig(out=tmp_path, images=200, seeds=(0, 1), overrides=("train.epochs=2",))
    summary = run_demo(cfg)
    assert set(summary["towers"]) == {"clip", "imagenet", "random"}
    for tower in summary["towers"].values():
        assert set(tower["seeds"]) == {"0", "1"} and tower["std"] >= 0
        assert min(tower["seeds"].values()) <= tower["mean"] <= max(tower["seeds"].values())
    assert set(summary["probes"]["clip"]) == {"shape", "colour", "count", "position"}
    assert (tmp_path / "run" / "checkpoints" / "best.pt").is_file()  # what serve picks up
    assert (tmp_path / "run-random-s1" / "checkpoints" / "best.pt").is_file()
    saved = json.loads((tmp_path / "demo_result.json").read_text())
    assert saved["towers"]["clip"]["mean"] == summary["towers"]["clip"]["mean"]
    again = run_demo(cfg)  # resumes: nothing extracted again, every training done
    assert again["images_extracted"] == 0 and again["towers"] == summary["towers"]
