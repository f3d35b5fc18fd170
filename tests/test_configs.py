"""Every shipped recipe loads, and the paper's settings are in them."""

from __future__ import annotations

from pathlib import Path

import pytest

from clipvil.train import load_config

CONFIGS = sorted(p for p in (Path(__file__).resolve().parents[1] / "configs").rglob("*.yaml") if not p.name.startswith("_"))


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_recipe_loads(path: Path) -> None:
    cfg = load_config(path)
    assert cfg.task_name in {"vqa", "caption", "clip", "classify", "retrieval", "vl_pretrain", "vl_finetune", "vln",
                             "grounding"}


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
        assert str(cfg.task.answer_vocab).endswith("answer_vocab/vqa")  # the released 3129 answers
        assert cfg.task.preload_features is False  # ~280 GB of COCO grids: read lazily


@pytest.mark.parametrize("encoder", ["rn50", "rn101", "rn50x4", "vit_b32", "imagenet_rn50"])
def test_movie_mcan_recipes_carry_mmf_settings(encoder: str) -> None:
    cfg = load_config(Path(__file__).resolve().parents[1] / f"configs/vqa/movie_mcan_{encoder}.yaml")
    assert (cfg.task.model, cfg.task.preset, cfg.task.loss) == ("movie_mcan", "default", "triple_bce")
    assert (cfg.optim.name, cfg.optim.lr, cfg.optim.betas, cfg.optim.eps) == ("adamw", 5e-5, (0.9, 0.98), 1e-9)
    s = cfg.schedule
    assert (s.warmup, s.warmup_mode, s.warmup_factor, s.milestones, s.decay) == (54000, "linear", 0.25,
                                                                                 [180000, 216000], 0.2)
    assert (cfg.train.batch_size, cfg.train.max_steps, cfg.train.train_split) == (64, 236000, "train+val+vg")
    assert cfg.task.word_vectors is not None and cfg.task.word_vectors.name == "glove.6B.300d.txt"
    assert cfg.task.extra_features and cfg.task.split_files["vg"] == ["VG_questions.json", "VG_annotations.json"]


@pytest.mark.parametrize("encoder", ["rn50", "rn101", "rn50x4", "vit_b32", "imagenet_rn50"])
def test_mcan_large_recipes(encoder: str) -> None:
    cfg = load_config(Path(__file__).resolve().parents[1] / f"configs/vqa/mcan_large_{encoder}.yaml")
    assert (cfg.task.preset, cfg.optim.lr, cfg.train.grad_accum, cfg.train.batch_size) == ("large", 5e-5, 2, 64)


def test_pythia_vit_recipe_asks_for_the_penultimate_block_without_ln_post() -> None:
    cfg = load_config(Path(__file__).resolve().parents[1] / "configs/vqa/pythia_vit_b32.yaml")
    assert cfg.task.feature_layer == "block10"  # what `clipvil extract --block -2` records for ViT-B-32
