"""Cards of the CLIP-ViL_p recipes (pre-training and fine-tuning), shrunk to a tiny BERT (a local config.json) and
the tiny CLIP ResNet, against parameter counts, grid cells, FLOP lower bounds and run lengths derived by hand."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from clipvil.apps import card_vl
from clipvil.apps.card_measure import step_flops_and_activations
from clipvil.apps.card_parts import CardOptions, CardParts, describer
from clipvil.encoders import build_encoder
from clipvil.engine.config import RunConfig, load_config

REPO = Path(__file__).resolve().parents[2]
DATA = Path("/work/shared/data")
V, H, LAYERS, FF = 120, 32, 2, 64  # the tiny BERT
IMAGE = (64, 96)  # 2 x 3 cells of the stride-32 tiny ResNet
TOWER = "clipvil-rn-tiny"


@pytest.fixture(autouse=True)
def _in_repo(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO)  # the recipes' answer-vocabulary paths are relative to the repository


@pytest.fixture(scope="module")
def bert_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("bert")
    (d / "config.json").write_text(json.dumps({
        "model_type": "bert", "vocab_size": V, "hidden_size": H, "num_hidden_layers": LAYERS,
        "num_attention_heads": 2, "intermediate_size": FF, "max_position_embeddings": 64, "type_vocab_size": 2}))
    return d


def _parts(recipe: str, bert_dir: Path, extra: list[str] | None = None) -> tuple[RunConfig, CardParts]:
    overrides = [f"task.bert_dir={bert_dir}", f"task.encoder={TOWER}", f"task.image_size=[{IMAGE[0]}, {IMAGE[1]}]",
                 *(extra or [])]
    cfg = load_config(REPO / "configs" / recipe, overrides)
    torch.manual_seed(0)
    return cfg, describer(cfg.task_name)(cfg, CardOptions())


def _tower_trainable() -> int:
    """The tiny ResNet's parameters but its attention pool (the grid never reaches it)."""
    tower = build_encoder(TOWER)
    return sum(p.numel() for n, p in tower.named_parameters() if ".attnpool." not in f".{n}")


def _bert() -> int:
    embeddings = V * H + 64 * H + 2 * H + 2 * H
    layer = 4 * (H * H + H) + 2 * H + (H * FF + FF) + (FF * H + H) + 2 * H
    return embeddings + LAYERS * layer


def _vl_params(grid_dim: int, answers: int, pretrain: bool) -> int:
    visual_embed = 2 * 25 * grid_dim + grid_dim * H + H + 2 * H  # row/col tables (25), visn_fc, LayerNorm
    heads = H * H + H  # pooler
    if pretrain:
        heads += (H * H + H + 2 * H) + V + (2 * H + 2)  # MLM transform + bias (decoder tied), ITM
    if answers:
        heads += H * 2 * H + 2 * H + 2 * 2 * H + 2 * H * answers + answers  # QA head
    return _bert() + visual_embed + heads


def _encoder_flops(tokens: int) -> int:
    """Forward FLOPs of the tiny BERT encoder's linear layers over `tokens` positions."""
    return 2 * tokens * LAYERS * (4 * H * H + 2 * H * FF)


def _tower_forward_flops(images: int) -> int:
    with torch.device("meta"):
        tower = build_encoder(TOWER)
    with FlopCounterMode(display=False) as counter:
        tower(torch.empty(images, 3, *IMAGE, device="meta"))
    return int(counter.get_total_flops())


def test_stage1_card_by_hand(bert_dir: Path) -> None:
    cfg, parts = _parts("pretrain/stage1_rn50.yaml", bert_dir, ["task.model_overrides.visual_tokens=4"])
    model = parts.model
    assert model.mlm.decoder.weight is model.transformer.bert.embeddings.word_embeddings.weight  # tied
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert trainable == _vl_params(1024, 0, pretrain=True) + _tower_trainable()
    f = parts.facts
    assert f["grid_hw"] == (2, 3) and f["visual_tokens"] == 4 and f["sequence"] == 20 + 4
    assert f["objectives"] == {"mlm": 1.0, "itm": 1.0} and f["mlm_positions"] == 3  # 15 % of 18, rounded
    groups = f["optimizer_groups"]
    assert groups["trunk"] == {"optim": "sgd", "params": _tower_trainable(), "states": 0}  # momentum 0
    assert groups["main"] == {"optim": "adamw", "params": trainable - _tower_trainable(), "states": 2}
    # the run: 9 epochs of LXMERT's 9.18M sentences at 512 per update (the recipe's "~161k updates")
    assert parts.train_samples == 9_180_000 and cfg.train.epochs * (parts.train_samples // 512) == 161_361
    assert parts.input_bytes == 3 * 64 * 96 * 4 and parts.frozen_params == 0 and parts.embedding_params == 0
    flops = step_flops_and_activations(model, parts.phases[0].loss_fn, 1)[0]
    # BERT's linear layers over 24 tokens forward + backward, the MLM decoder at 3 positions, the tower forward
    assert flops >= 3 * _encoder_flops(24) + 3 * 2 * 3 * H * V + _tower_forward_flops(1)


def test_stage2_adds_the_qa_head(bert_dir: Path) -> None:
    table = DATA / "clip-vil/answer_vocab/lxmert/all_ans.json"
    _, parts = _parts("pretrain/stage2_rn50x4.yaml", bert_dir, [f"task.answer_table={table}"])
    assert parts.facts["n_answers"] == card_vl.LXMERT_ANSWERS == 9_500
    assert parts.facts["objectives"] == {"mlm": 1.0, "itm": 1.0, "qa": 1.0}
    assert sum(p.numel() for p in parts.model.parameters() if p.requires_grad) == (
        _vl_params(1024, 9_500, pretrain=True) + _tower_trainable())
    assert parts.facts["sequence"] == 20 + 6  # 100 tokens asked, the grid has 6 cells


def test_snli_ve_and_vqa_cards(bert_dir: Path) -> None:
    cfg, parts = _parts("finetune/snli_ve_rn50.yaml", bert_dir)
    assert parts.facts["n_answers"] == 3 and parts.facts["sequence"] == 20 + 6  # every cell, no sampling
    assert sum(p.numel() for p in parts.model.parameters() if p.requires_grad) == (
        _vl_params(1024, 3, pretrain=False) + _tower_trainable())
    assert parts.datasets["train"]["pairs"] == 529_527 and parts.datasets["test"]["pairs"] == 17_901
    assert cfg.train.epochs * (parts.train_samples // cfg.train.batch_size) == 10_340  # the recipe's ~10.3k
    flops = step_flops_and_activations(parts.model, parts.phases[0].loss_fn, 1)[0]
    assert flops >= 3 * _encoder_flops(26) + _tower_forward_flops(1)
    _, vqa = _parts("finetune/vqa_rn50x4.yaml", bert_dir)
    assert vqa.facts["n_answers"] == 3129  # the released answer table's size (shared/data/clip-vil)
    assert vqa.train_samples == 443_757 and vqa.datasets["val"]["questions"] == 214_354


def test_nlvr2_pair_card(bert_dir: Path) -> None:
    _, parts = _parts("finetune/nlvr2_rn50.yaml", bert_dir)
    assert parts.facts["images_per_sample"] == 2 and parts.facts["sequence"] == 20 + 2 * 6
    assert sum(p.numel() for p in parts.model.parameters() if p.requires_grad) == (
        _vl_params(1024, 2, pretrain=False) + 2 * H + _tower_trainable())  # + the image-index embedding
    assert parts.input_bytes == 2 * 3 * 64 * 96 * 4
    dev = sum(1 for line in (DATA / "nlvr2/dev.json").read_text().splitlines() if line.strip())
    assert parts.datasets["val"]["examples"] == dev == 6_982 and parts.train_samples == 86_373
    flops = step_flops_and_activations(parts.model, parts.phases[0].loss_fn, 1)[0]
    assert flops >= 3 * _encoder_flops(32) + _tower_forward_flops(2)


def test_synthetic_worlds_have_no_official_sizes(bert_dir: Path) -> None:
    _, parts = _parts("finetune/nlvr2_synthetic.yaml", bert_dir)
    assert parts.train_samples is None and "synthetic world" in parts.datasets["train"]["note"]


def test_bert_base_without_a_local_directory() -> None:
    """The paper recipes name a bert-base-uncased directory that is not here: its sizes, nothing downloaded."""
    cfg = load_config(REPO / "configs/pretrain/stage1_rn50.yaml", ["task.bert_dir=/nonexistent/bert"])
    config, how = card_vl.bert_config(cfg.task, 0)
    assert (config.vocab_size, config.hidden_size, config.num_hidden_layers, config.intermediate_size) == (
        30_522, 768, 12, 3_072)
    assert "not here" in how
    with pytest.raises(ValueError, match="CLIP-ViL"):
        card_vl.bert_config(load_config(REPO / "configs/pretrain/stage1_rn50.yaml", ["task.text_tower=clip"]).task, 0)
