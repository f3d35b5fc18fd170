"""The grounding card: the grid head over cached grids of the "pretrain" preset, against facts derived by hand
(grid cells, RefCOCO's training expressions and the recipe's epochs, the visual projection's FLOPs as a lower
bound). The head is shrunk to its tiny preset."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from clipvil.apps.card import make_card

REPO = Path(__file__).resolve().parents[2]


def test_grounding_card_of_refcoco(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO)
    d = json.loads(json.dumps(make_card("configs/grounding/grid_rn50_refcoco.yaml", ["task.preset=tiny"]).to_dict()))
    assert d["facts"]["grid_hw"] == [12, 20] and d["facts"]["grid_dim"] == 2048  # 384x640 padded, stride 32
    assert d["updates"] == 90 * (120_624 // 64) == 169_560  # 90 epochs of RefCOCO (unc) train at batch 64
    assert d["datasets"]["testB"]["expressions"] == 5_095
    assert d["embedding_params"] == 20_000 * 16  # assumed vocabulary x the tiny word_dim
    # visual projection 2048 -> 32 over 240 cells: forward + weight gradient (the grid needs none)
    assert d["flops_per_sample"] >= 4 * 240 * 2048 * 32
    assert d["input_bytes"] == 240 * 2048 * 2
    assert d["paper"]["reproduces"] is None and "grounding extension" in d["paper"]["note"]


def test_refcocog_clips_longer_expressions(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO)
    card = make_card("configs/grounding/grid_vit_b32_refcocog.yaml", ["task.preset=tiny"])
    assert card.facts["tokens"] == 40 and card.facts["grid_dim"] == 768
    assert card.updates == 90 * (80_512 // 64)
    unknown = make_card("configs/grounding/grid_vit_b32_refcocog.yaml", ["task.preset=tiny", "task.split_by=google"])
    assert unknown.updates is None and unknown.gpu_hours is None  # no size known for that partition
