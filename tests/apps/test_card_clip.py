"""Cards of the CLIP recipes: contrastive pre-training (both towers, frozen parts forward only), the ImageNet
baseline, and the evaluation-only zero-shot recipes (forward FLOPs per test sample over the test set), on the
small open_clip configs, against facts derived by hand."""

from __future__ import annotations

from pathlib import Path

import pytest

from clipvil.apps.card import make_card, to_markdown
from clipvil.families.clip.model import create_clip

REPO = Path(__file__).resolve().parents[2]
TINY_EMBED = 128  # embed_dim of clipvil-rn-tiny / clipvil-vit-tiny (encoders/model_configs)


def test_clip_pretraining_card(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO)
    card = make_card("configs/clip/coco_rn50_indomain.yaml", ["task.model=clipvil-rn-tiny", "task.weights=null"])
    model = create_clip("clipvil-rn-tiny")
    text = sum(p.numel() for n, p in model.named_parameters()
               if n.split(".")[0] in ("transformer", "token_embedding", "ln_final", "positional_embedding",
                                      "text_projection"))
    stem_layer1 = sum(p.numel() for n, p in model.named_parameters()
                      if n.startswith(("visual.conv", "visual.bn", "visual.layer1.")))
    assert card.frozen_params == text + stem_layer1  # freeze_text + freeze_image_stages 2
    assert card.params + card.frozen_params == sum(p.numel() for p in model.parameters())
    assert card.updates == 5 * (566_747 // 256)  # 5 epochs of Karpathy train+restval pairs at batch 256
    (phase,) = card.phases
    assert phase.optimizers == ["main: adamw", "trunk: adamw"]
    assert card.facts["image"] == (96, 96) and card.facts["text_tokens"] == 77
    # the frozen text tower still runs forward: at least its token-wise MLPs, 2 layers x 77 x (2 x 128 x 512) x 2
    assert phase.cost.flops >= 2 * 77 * 2 * 128 * 512 * 2
    assert card.paper["reproduces"] is None


def test_imagenet_classifier_card(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO)
    card = make_card("configs/classify/imagefolder_resnet50.yaml", ["task.timm_model=resnet18"])
    assert card.updates == 90 * (1_281_167 // 256) == 450_360
    assert card.facts["image"] == (224, 224) and card.facts["classes"] == 1000
    # resnet18's first conv, 7x7x3 -> 64 over 112x112 outputs: forward + weight gradient
    assert card.flops_per_sample >= 2 * 2 * 112 * 112 * 64 * 147
    assert card.phases[0].cost.optimizer_state_bytes == card.params * 4  # SGD momentum: one buffer


def test_retrieval_is_evaluation_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO)
    card = make_card("configs/retrieval/coco_karpathy_1k.yaml", ["task.model=clipvil-vit-tiny"])
    assert card.evaluation_only and card.updates is None and card.eval_samples == 1000
    image, texts, scores = card.phases
    assert texts.repeat == 5 and scores.cost.flops == 2 * TINY_EMBED * 5_000  # a row of the 1k x 5k matrix
    assert card.flops_per_sample == image.cost.flops + 5 * texts.cost.flops + scores.cost.flops
    assert card.total_flops == 1000 * card.flops_per_sample
    assert image.cost.activation_bytes == 0 and image.cost.forward_only
    assert "evaluation only" in to_markdown(card)


def test_zero_shot_vqa_scores_every_answer(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO)
    card = make_card("configs/retrieval/zeroshot_vqa_v2.yaml", ["task.model=clipvil-vit-tiny"])
    _, texts, scores = card.phases
    assert texts.repeat == 3129 * 2  # both templates read the question
    assert card.eval_samples == 214_354  # VQA v2 val2014 questions
    assert scores.cost.flops == 2 * TINY_EMBED * 3129 * 2
    assert card.gpu_hours == pytest.approx(214_354 * card.flops_per_sample / (312e12 * 0.4) / 3600)
