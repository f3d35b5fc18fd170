"""Every shipped recipe loads, and the paper's settings are in them."""

from __future__ import annotations

from pathlib import Path

import pytest

from clipvil.train import load_config

CONFIGS = sorted(p for p in (Path(__file__).resolve().parents[1] / "configs").rglob("*.yaml") if not p.name.startswith("_"))


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_recipe_loads(path: Path) -> None:
    cfg = load_config(path)
    assert cfg.task_name == "vqa"


@pytest.mark.parametrize("encoder", ["rn50", "rn101", "rn50x4", "vit_b32", "imagenet_rn50"])
def test_paper_vqa_recipes(encoder: str) -> None:
    root = Path(__file__).resolve().parents[1] / "configs/vqa"
    pythia = load_config(root / f"pythia_{encoder}.yaml")
    assert (pythia.optim.name, pythia.optim.lr, pythia.train.batch_size, pythia.train.max_steps) == ("adamax", 0.01, 512, 22000)
    assert (pythia.schedule.warmup, pythia.schedule.warmup_factor, pythia.schedule.decay) == (1000, 0.2, 0.1)
    mcan = load_config(root / f"mcan_{encoder}.yaml")
    assert (mcan.optim.name, mcan.optim.lr, mcan.train.batch_size, mcan.train.epochs) == ("adamw", 1e-4, 64, 13)
    assert (mcan.schedule.milestones, mcan.schedule.decay, mcan.schedule.warmup) == ([10, 12], 0.2, 3)
    for cfg in (pythia, mcan):
        assert cfg.task.feature_preset == "vqa"  # 600x1000 inputs
        assert cfg.task.answer_vocab.endswith("answer_vocab/vqa")  # the released 3129 answers
