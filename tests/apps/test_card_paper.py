"""The paper-number table of the recipe cards: keys are real recipes, spellings resolve, values as read."""

from __future__ import annotations

from pathlib import Path

import pytest

from clipvil.apps.card_paper import (
    NOT_IN_PAPER,
    PAPER,
    PaperNumber,
    no_number_reason,
    paper_number,
    recipe_key,
)

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def test_every_key_is_a_recipe_file_and_in_one_table_only() -> None:
    missing = [k for k in (*PAPER, *NOT_IN_PAPER) if not (CONFIGS / f"{k}.yaml").is_file()]
    assert missing == []
    assert set(PAPER) & set(NOT_IN_PAPER) == set()


def test_every_paper_recipe_family_is_accounted_for() -> None:
    # the recipe families of the task, written out here independently of the module's loops
    vqa_enc = ["rn50", "rn101", "rn50x4", "vit_b32", "imagenet_rn50"]
    r2r_enc = ["clip_vit_b32", "rn50", "rn101", "rn50x4", "imagenet_resnet152"]
    expected = (
        [f"vqa/{h}_{e}" for h in ("pythia", "mcan", "movie_mcan", "mcan_large") for e in vqa_enc]
        + [f"caption/transformer_{e}" for e in vqa_enc]
        + [f"vln/{a}_{e}" for a in ("follower", "speaker", "bt_envdrop") for e in r2r_enc]
        + [f"vln/rxr_{lang}_{e}" for lang in ("en", "hi", "te")
           for e in ("clip_vit_b32", "rn50", "imagenet_resnet152")]
        + [f"pretrain/stage{s}_{e}" for s in (1, 2) for e in ("rn50", "rn50x4")]
        + [f"finetune/{t}_{e}" for t in ("vqa", "gqa", "snli_ve", "nlvr2") for e in ("rn50", "rn50x4")]
        + ["retrieval/coco_karpathy_1k", "retrieval/coco_karpathy_5k", "retrieval/flickr30k_1k",
           "retrieval/zeroshot_vqa_v2"]
        + [f"grounding/grid_{e}_{d}" for e in ("rn50", "vit_b32")
           for d in ("refcoco", "refcoco+", "refcocog")]
    )
    assert len(expected) == 71
    assert sorted(set(PAPER) | set(NOT_IN_PAPER)) == sorted(expected)
    assert all(reason.strip() for reason in NOT_IN_PAPER.values())


@pytest.mark.parametrize("spelling", [
    "configs/vqa/pythia_rn50x4.yaml",
    "vqa/pythia_rn50x4",
    "vqa/pythia_rn50x4.yaml",
    CONFIGS / "vqa" / "pythia_rn50x4.yaml",
    Path("configs") / "vqa" / "pythia_rn50x4.yml",
])
def test_paper_number_accepts_every_spelling(spelling: str | Path) -> None:
    assert recipe_key(spelling) == "vqa/pythia_rn50x4"
    assert paper_number(spelling) is PAPER["vqa/pythia_rn50x4"]


def test_unknown_and_unnumbered_recipes() -> None:
    assert paper_number("vqa/no_such_recipe") is None
    assert paper_number("configs/classify/synthetic_rn_tiny.yaml") is None
    assert no_number_reason("configs/classify/synthetic_rn_tiny.yaml") is None
    assert paper_number("vln/speaker_rn50") is None
    assert "speaker" in (no_number_reason(CONFIGS / "vln" / "speaker_rn50.yaml") or "")
    assert no_number_reason("vqa/pythia_rn50x4") is None
    with pytest.raises(ValueError, match="not a recipe"):
        recipe_key("configs")


def test_values_as_read_in_the_sources() -> None:
    # CLIP-ViL-Direct/vqa/README.md: "on VQA 2.0 `test-dev`, we are able to achieve up to **68.37%** accuracy
    # with Pythia, **74.01%** accuracy with MCAN"
    assert PAPER["vqa/pythia_rn50x4"].value == 68.37
    assert PAPER["vqa/movie_mcan_rn50x4"].value == 74.01
    # README.md: "CLIP-ViL-Pretrain is able to achieve **76.48%** accuracy on VQA 2.0 `test-dev` and
    # **76.70%** accuracy on `test-std`;  **80.61%** accuracy on SNLI-VE `Dev` and **80.20%** on `Test-P`;
    # **61.42%**  accuracy on GQA `test-dev` and **62.93%** accuracy on `test-std`."
    vqa, snli, gqa = (PAPER[f"finetune/{t}_rn50x4"] for t in ("vqa", "snli_ve", "gqa"))
    assert (vqa.value, vqa.extra) == (76.48, {"test-std": 76.70})
    assert (snli.value, snli.extra) == (80.20, {"dev": 80.61})
    assert (gqa.value, gqa.extra) == (61.42, {"test-std": 62.93})
    # CLIP-ViL-VLN/README.md (run/agent_clip_vit.bash): "Unseen success rate would be around 46%."
    assert PAPER["vln/follower_clip_vit_b32"].value == 46.0
    assert "val_unseen" in PAPER["vln/follower_clip_vit_b32"].metric


def _printed(v: float) -> tuple[str, str]:
    return f"{v:.2f}", f"{v:g}%"


@pytest.mark.parametrize("key", sorted(PAPER))
def test_each_number_is_quoted_in_its_own_source(key: str) -> None:
    entry = PAPER[key]
    assert isinstance(entry, PaperNumber) and entry.metric and entry.row
    for v in (entry.value, *entry.extra.values()):
        assert any(s in entry.source for s in _printed(v)), (key, v)
