"""Every shipped recipe loads, and the paper's settings are in them."""

from __future__ import annotations

from pathlib import Path

import pytest

from clipvil.engine import load_config
from clipvil.engine.registry import registered_tasks

CONFIGS = sorted(p for p in (Path(__file__).resolve().parents[1] / "configs").rglob("*.yaml")
                 if not p.name.startswith("_") and p.parent.name != "study")  # study files are not run configs


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_recipe_loads(path: Path) -> None:
    cfg = load_config(path)
    assert cfg.task_name in registered_tasks()  # the recipe's task module exists and registered itself


@pytest.mark.parametrize("encoder", ["rn50", "rn101", "rn50x4", "vit_b32", "imagenet_rn50"])
def test_paper_vqa_recipes(encoder: str) -> None:
    root = Path(__file__).resolve().parents[1] / "configs/vqa"
    pythia = load_config(root / f"pythia_{encoder}.yaml")
    got = (pythia.optim.name, pythia.optim.lr, pythia.train.batch_size, pythia.train.max_steps)
    assert got == ("adamax", 0.01, 512, 22000)
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


@pytest.mark.parametrize("encoder", ["rn50", "rn101", "rn50x4", "vit_b32", "imagenet_rn50"])
def test_paper_caption_recipes(encoder: str) -> None:
    cfg = load_config(Path(__file__).resolve().parents[1] / f"configs/caption/transformer_{encoder}.yaml")
    t = cfg.task
    assert (t.preset, t.feature_preset, t.vocab_min_count, t.max_caption_words) == ("paper", "caption", 5, 16)
    assert (t.seq_per_img, t.scst_samples, t.scst_baseline, t.decode_max_len) == (5, 5, "greedy", 20)
    assert (cfg.optim.name, cfg.optim.lr, cfg.optim.betas, cfg.optim.eps) == ("adam", 1.0, (0.9, 0.98), 1e-9)
    assert (cfg.schedule.name, cfg.schedule.warmup, cfg.schedule.d_model) == ("noam", 20000, 512)
    xe, scst = cfg.phases
    assert (xe.name, xe.start_epoch, scst.name, scst.start_epoch) == ("xe", 0, "scst", 15)
    assert (scst.optim.name, scst.optim.lr, scst.schedule.name, scst.schedule.milestones) == ("adam", 5e-6, "step", [])
    assert (cfg.train.batch_size, cfg.train.epochs) == (10, 40)  # 10 images x 5 captions, to epoch 40
    assert t.preload_features is False


@pytest.mark.parametrize("encoder", ["rn50", "vit_b32"])
@pytest.mark.parametrize("dataset", ["refcoco", "refcoco+", "refcocog"])
def test_grounding_recipes(encoder: str, dataset: str) -> None:
    cfg = load_config(Path(__file__).resolve().parents[1] / f"configs/grounding/grid_{encoder}_{dataset}.yaml")
    t = cfg.task
    assert (t.dataset, t.model, t.feature_preset) == (dataset, "grid_grounding", "pretrain")  # aspect kept, padded
    assert t.feature_encoder == {"rn50": "RN50", "vit_b32": "ViT-B-32"}[encoder]
    assert (t.loss_cell, t.loss_l1, t.loss_giou) == (1.0, 5.0, 2.0)  # DETR / TransVG box terms
    assert (cfg.optim.name, cfg.optim.lr, cfg.train.batch_size, cfg.train.epochs) == ("adamw", 1e-4, 64, 90)
    splits = ["val", "test"] if dataset == "refcocog" else ["val", "testA", "testB"]
    assert (cfg.train.eval_splits, cfg.train.best_split) == (splits, "val")
    assert (t.split_by, t.max_tokens) == (("umd", 40) if dataset == "refcocog" else ("", 20))


@pytest.mark.parametrize("encoder", ["clip_vit_b32", "rn50", "rn101", "rn50x4", "imagenet_resnet152"])
def test_vln_recipes_carry_envdrop_settings(encoder: str) -> None:
    root = Path(__file__).resolve().parents[1] / "configs/vln"
    follower = load_config(root / f"follower_{encoder}.yaml")
    t = follower.task
    assert (t.mode, t.feedback, t.ml_weight, t.max_input, t.max_action) == ("follower", "sample", 0.2, 80, 35)
    assert t.model_overrides == {"dropout": 0.5, "feat_dropout": 0.3} and t.vocab.name == "train_vocab.txt"
    assert (follower.optim.name, follower.optim.lr, follower.train.clip_grad_norm) == ("rmsprop", 1e-4, 40.0)
    assert (follower.train.batch_size, follower.train.max_steps) == (64, 80000)
    assert follower.train.eval_splits == ["val_seen", "val_unseen"] and follower.train.best_split == "val_unseen"
    assert t.primary_metric == "sr" and follower.train.find_unused_parameters
    speaker = load_config(root / f"speaker_{encoder}.yaml")
    assert (speaker.task.mode, speaker.optim.name, speaker.optim.lr, speaker.train.max_steps) == ("speaker", "adam",
                                                                                               1e-4, 80000)
    assert speaker.task.model_overrides["dropout"] == 0.6 and speaker.task.max_decode == 120
    bt = load_config(root / f"bt_envdrop_{encoder}.yaml")
    assert bt.task.model_overrides["feat_dropout"] == 0.4 and (bt.task.ml_weight, bt.task.aug_ml_weight) == (0.2, 0.6)
    assert (bt.train.batch_size, bt.train.grad_accum, bt.train.max_steps) == (128, 2, 100000)
    assert bt.train.init_from.endswith(f"follower_{encoder}/checkpoints/best.pt")
    assert str(bt.task.speaker_checkpoint).endswith(f"speaker_{encoder}/checkpoints/best.pt")
    assert t.feature_encoder == bt.task.feature_encoder == speaker.task.feature_encoder


@pytest.mark.parametrize("language", ["en", "hi", "te"])
@pytest.mark.parametrize("encoder", ["clip_vit_b32", "rn50"])
def test_rxr_recipes(language: str, encoder: str) -> None:
    cfg = load_config(Path(__file__).resolve().parents[1] / f"configs/vln/rxr_{language}_{encoder}.yaml")
    t = cfg.task
    assert (t.dataset, t.language, t.tokenizer, t.max_input, t.ml_weight) == ("rxr", language, "subword", 160, 0.4)
    assert (t.record_turns, t.merge_repeats, t.primary_metric) == (False, False, "ndtw")
    assert (cfg.optim.name, cfg.optim.lr, cfg.train.max_steps) == ("rmsprop", 1e-4, 200000)


@pytest.mark.parametrize("encoder", ["rn50", "rn50x4"])
def test_clip_vil_p_recipes_carry_the_reference_settings(encoder: str) -> None:
    """CLIP-ViL-Pretrain's readme: stage 1 MLM+ITM 9 epochs, stage 2 +QA 11 epochs, AdamW + SGD trunk (3e-3),
    batch 32 x 8 GPUs x 2 accumulation (30 for RN50x4), 100 sampled tokens, text <= 20, stage 2 from stage 1."""
    root = Path(__file__).resolve().parents[1] / "configs"
    one = load_config(root / f"pretrain/stage1_{encoder}.yaml")
    two = load_config(root / f"pretrain/stage2_{encoder}.yaml")
    lr1, lr2, batch = {"rn50": (1e-4, 5e-5, 512), "rn50x4": (5e-5, 2.75e-5, 480)}[encoder]
    for cfg, lr, epochs, objectives in ((one, lr1, 9, ["mlm", "itm"]), (two, lr2, 11, ["mlm", "itm", "qa"])):
        got = (cfg.task_name, cfg.task.objectives, cfg.optim.name, cfg.optim.lr)
        assert got == ("vl_pretrain", objectives, "adamw", lr)
        assert (cfg.train.batch_size, cfg.train.grad_accum, cfg.train.epochs) == (batch, 2, epochs)
        trunk = cfg.extra_optimizers["trunk"]
        assert (trunk.modules, trunk.optim.name, trunk.optim.lr) == (["visual"], "sgd", 3e-3)
        assert cfg.task.model_overrides["visual_tokens"] == 100 and cfg.task.max_text_tokens == 20
        assert cfg.task.image_size == [384, 640] and cfg.train.amp == "fp16"
    assert one.extra_optimizers["trunk"].schedule.milestones == [12, 17]
    assert two.train.init_from.endswith(f"stage1_{encoder}/checkpoints/last.pt") and two.train.init_strict is False
    for dataset in ("vqa", "gqa", "snli_ve", "nlvr2"):
        ft = load_config(root / f"finetune/{dataset}_{encoder}.yaml")
        assert (ft.task_name, ft.task.dataset, ft.optim.lr, ft.train.batch_size, ft.train.epochs) == (
            "vl_finetune", dataset, 5e-5, 256, 5)
        assert str(ft.task.pretrained).endswith(f"stage2_{encoder}/checkpoints/last.pt")
        assert ft.extra_optimizers["trunk"].optim.lr == 1e-3
