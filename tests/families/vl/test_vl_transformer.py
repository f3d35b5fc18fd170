"""CLIP-ViL_p transformer: shapes, visual token sampling, mixed grid shapes, masking, load order, heads."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from torch import nn
from transformers import BertConfig, BertForPreTraining

from clipvil.data.lxmert import convert_lxmert_answer
from clipvil.data.tokenizers import default_bert_dir
from clipvil.encoders import build_encoder
from clipvil.engine.models import build_model, get_model
from clipvil.families.vl.heads import QAHead, init_answer_head
from clipvil.families.vl.pair import VLPairModel
from clipvil.families.vl.transformer import VLConfig, VLModel, build_vl_model, sample_visual_tokens
from clipvil.types import GridFeatures

GRID_DIM = 12


class TinyTower(nn.Module):
    """A stand-in CLIP trunk: one stride-8 convolution and a BatchNorm; masks as clipvil towers make them."""

    stride, dim = 8, GRID_DIM

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, GRID_DIM, 8, stride=8)
        self.bn = nn.BatchNorm2d(GRID_DIM)

    def forward(self, pixels: torch.Tensor, content_hw=None, pooled: bool = False) -> GridFeatures:
        fmap = self.bn(self.conv(pixels))  # [B, C, h, w]
        b, _, h, w = fmap.shape
        mask = torch.ones(b, h, w, dtype=torch.bool)
        for i, (ph, pw) in enumerate(content_hw or []):  # a cell is real when it overlaps real pixels
            mask[i] = False
            mask[i, : -(-ph // 8), : -(-pw // 8)] = True
        mask = mask.flatten(1)
        return GridFeatures(fmap.flatten(2).transpose(1, 2), mask, (h, w))


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, torch.Tensor]]:
    """A random BERT-for-pre-training checkpoint (heads included) saved the transformers way; its state."""
    torch.manual_seed(0)
    cfg = BertConfig(
        vocab_size=50,
        hidden_size=16,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=32,
    )
    model = BertForPreTraining(cfg)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(
                torch.randn_like(p) * 0.1
            )  # so that no tensor keeps its init value (LayerNorm 1/0, biases 0)
    path = tmp_path_factory.mktemp("tiny_bert")
    model.save_pretrained(path)
    return path, {k: v.clone() for k, v in model.state_dict().items()}


def _tiny(tiny_bert, n_answers: int = 5, **cfg) -> VLModel:
    torch.manual_seed(0)
    return build_vl_model(VLConfig(**cfg), tiny_bert[0], TinyTower(), n_answers=n_answers).eval()


def _tokens(b: int, t: int) -> tuple[torch.Tensor, torch.Tensor]:
    ids = torch.randint(5, 50, (b, t), generator=torch.Generator().manual_seed(b * 100 + t))
    ids[:, 0] = 1  # [CLS]-like first token
    att = torch.ones(b, t, dtype=torch.long)
    att[1:, t - 2 :] = 0  # padded tail on all but the first
    return ids, att


def test_shapes_and_the_tied_mlm_head(tiny_bert) -> None:
    model = _tiny(tiny_bert)
    ids, att = _tokens(3, 6)
    pixels = torch.randn(3, 3, 40, 48)  # grid 5 x 6
    out = model.forward_pretrain(
        pixels, None, ids, att, n_visual=7, generator=torch.Generator().manual_seed(0)
    )
    assert out.mlm.shape == (3, 6, 50) and out.itm.shape == (3, 2) and out.qa.shape == (3, 5)
    assert out.encoded.visual.shape == (3, 7, 16) and out.encoded.pooled.shape == (3, 16)
    assert model.forward(pixels, None, ids, att).shape == (3, 5)
    assert model.transformer(model.visual(pixels), ids, att).visual.shape == (3, 30, 16)  # all cells
    emb = model.transformer.bert.embeddings.word_embeddings.weight
    assert model.mlm.decoder.weight is emb
    expected = model.mlm.transform(out.encoded.text) @ emb.T + model.mlm.bias  # BERT's MLM head by hand
    torch.testing.assert_close(out.mlm, expected)
    sel = torch.rand(3, 6) < 0.5
    part = model.forward_pretrain(
        pixels, None, ids, att, n_visual=7, generator=torch.Generator().manual_seed(0), mlm_mask=sel
    )
    torch.testing.assert_close(part.mlm, out.mlm[sel])


def _masked_grid(real_hw: list[tuple[int, int]], grid_hw: tuple[int, int], fill: float = 0.0) -> GridFeatures:
    b, (h, w) = len(real_hw), grid_hw
    feats = torch.full((b, h, w, GRID_DIM), fill)
    mask = torch.zeros(b, h, w, dtype=torch.bool)
    for i, (rh, rw) in enumerate(real_hw):
        feats[i, :rh, :rw] = torch.randn(rh, rw, GRID_DIM, generator=torch.Generator().manual_seed(i))
        mask[i, :rh, :rw] = True
    return GridFeatures(feats.flatten(1, 2), mask.flatten(1), grid_hw)


def test_token_sampling_takes_k_real_cells_only() -> None:
    grid = _masked_grid([(5, 6), (2, 6), (2, 4), (1, 3)], (5, 6))  # 30, 12, 8 and 3 real cells
    index, valid = sample_visual_tokens(grid.mask, 10, torch.Generator().manual_seed(0))
    assert index.shape == (4, 10)
    for i, n_real in enumerate((30, 12, 8, 3)):
        real = set(grid.mask[i].nonzero().flatten().tolist())
        picked = index[i][valid[i]].tolist()
        assert len(set(index[i].tolist())) == 10 and index[i].tolist() == sorted(index[i].tolist())
        assert set(picked) <= real and len(picked) == min(10, n_real)
        if n_real < 10:
            assert set(picked) == real  # every real cell kept, the rest are padding (masked)
        assert valid[i].tolist() == [c in real for c in index[i].tolist()]
    again, _ = sample_visual_tokens(grid.mask, 10, torch.Generator().manual_seed(0))
    other, _ = sample_visual_tokens(grid.mask, 10, torch.Generator().manual_seed(1))
    assert torch.equal(index, again) and not torch.equal(index[:2], other[:2])
    counts = torch.zeros(30)
    gen = torch.Generator().manual_seed(2)
    for _ in range(1500):
        counts += torch.bincount(sample_visual_tokens(grid.mask[:1], 10, gen)[0][0], minlength=30)
    assert (counts / 1500 - 10 / 30).abs().max() < 0.05  # uniform over the cells


def test_sampled_tokens_are_the_cells_embeddings_and_positions_by_hand(tiny_bert) -> None:
    model = _tiny(tiny_bert)
    grid = _masked_grid([(4, 5), (3, 2)], (4, 5))
    embed = model.transformer.visual_embed
    modality = model.transformer.bert.embeddings.token_type_embeddings.weight[1]
    with torch.no_grad():
        full, _, _ = embed(grid, modality)  # [B, 20, H]
        part, _, index = embed(grid, modality, n_visual=6, generator=torch.Generator().manual_seed(3))
        torch.testing.assert_close(part, full.gather(1, index[..., None].expand(-1, -1, 16)))
        # cell (r, c) = LayerNorm(fc(x + row[r] + col[c]) + type[1]), written out for cell 7 = (1, 2)
        x = grid.feats[0, 7] + embed.row_embedding.weight[1] + embed.col_embedding.weight[2]
        y = torch.nn.functional.layer_norm(
            embed.visn_fc(x) + modality,
            (16,),
            embed.visn_layer_norm.weight,
            embed.visn_layer_norm.bias,
            1e-12,
        )
        torch.testing.assert_close(full[0, 7], y)
    with pytest.raises(ValueError, match="exceeds the position tables"):
        embed(GridFeatures(torch.zeros(1, 21 * 2, GRID_DIM), torch.ones(1, 42, dtype=torch.bool), (21, 2)))


def test_portrait_and_landscape_in_one_batch_match_each_alone_and_padding_changes_nothing(tiny_bert) -> None:
    model = _tiny(tiny_bert)
    ids, att = _tokens(2, 6)
    shapes = [(12, 20), (20, 12)]  # landscape and portrait in one 20 x 20 batch grid
    with torch.no_grad():
        padded = _masked_grid(shapes, (20, 20))
        batch = model.transformer(padded, ids, att)
        garbage = model.transformer(_masked_grid(shapes, (20, 20), fill=float("nan")), ids, att)
        for i, (h, w) in enumerate(shapes):
            own = (
                padded.feats[i].view(20, 20, GRID_DIM)[:h, :w].reshape(1, h * w, GRID_DIM)
            )  # the image alone
            alone_grid = GridFeatures(own, torch.ones(1, h * w, dtype=torch.bool), (h, w))
            alone = model.transformer(alone_grid, ids[i : i + 1], att[i : i + 1])
            real = batch.visual_mask[i]
            assert int(real.sum()) == 240
            torch.testing.assert_close(batch.pooled[i], alone.pooled[0], atol=2e-5, rtol=1e-4)
            keep = att[i].bool()
            torch.testing.assert_close(batch.text[i][keep], alone.text[0][keep], atol=2e-5, rtol=1e-4)
            torch.testing.assert_close(batch.visual[i][real], alone.visual[0], atol=2e-5, rtol=1e-4)
    # NaN in padded cells: every real output identical to the bit
    assert torch.equal(batch.pooled, garbage.pooled)
    assert torch.equal(batch.visual[batch.visual_mask], garbage.visual[garbage.visual_mask])


def _random_state(module: nn.Module, seed: int) -> dict[str, torch.Tensor]:
    """A "CLIP state" unlike any init: every float tensor random (variances positive), integers kept."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for k, v in module.state_dict().items():
        if v.is_floating_point():
            r = torch.randn(v.shape, generator=g, dtype=v.dtype)
            out[k] = r.abs() + 0.5 if k.endswith("running_var") else r
        else:
            out[k] = v.clone()
    return out


@pytest.mark.parametrize("tower", ["RN50", "ViT-S-32"])
def test_load_order_guard_clip_state_is_loaded_last(tower: str) -> None:
    bert_dir = default_bert_dir()
    visual = build_encoder(tower, trainable=True)
    state = _random_state(visual, seed=11)
    model = build_vl_model(VLConfig(layers=1, grad_checkpointing=True), bert_dir, visual, state, n_answers=3)
    got = model.visual.state_dict()
    assert set(got) == set(state)
    assert all(torch.equal(got[k], state[k]) for k in state)
    with safe_open(str(bert_dir / "model.safetensors"), "pt") as f:  # BERT came from the checkpoint too
        assert torch.equal(
            model.transformer.bert.embeddings.word_embeddings.weight,
            f.get_tensor("embeddings.word_embeddings.weight"),
        )
    # without a state, construction leaves the given tower's weights exactly as they were
    before = {k: v.clone() for k, v in visual.state_dict().items()}
    model = build_vl_model(VLConfig(layers=1), bert_dir, visual, None)
    assert all(torch.equal(model.visual.state_dict()[k], before[k]) for k in before)
    with pytest.raises(ValueError, match="does not fit"):
        build_vl_model(VLConfig(layers=1), bert_dir, visual, {"visual.nonsense": torch.zeros(1)})


def test_bert_checkpoint_heads_layers_and_from_scratch(tiny_bert) -> None:
    path, ckpt = tiny_bert
    model = build_vl_model(VLConfig(layers=1), path, TinyTower(), n_answers=2)
    got = model.state_dict()
    pairs = {
        "transformer.pooler.dense.weight": "bert.pooler.dense.weight",
        "transformer.bert.encoder.layer.0.output.dense.weight": "bert.encoder.layer.0.output.dense.weight",
        "mlm.transform.dense.weight": "cls.predictions.transform.dense.weight",
        "mlm.transform.LayerNorm.bias": "cls.predictions.transform.LayerNorm.bias",
        "mlm.bias": "cls.predictions.bias",
        "itm.seq_relationship.weight": "cls.seq_relationship.weight",
        "itm.seq_relationship.bias": "cls.seq_relationship.bias",
    }
    for ours, theirs in pairs.items():
        assert torch.equal(got[ours], ckpt[theirs]), ours
    assert len(model.transformer.bert.encoder.layer) == 1
    scratch = build_vl_model(VLConfig(layers=1, from_scratch=True), path, TinyTower())
    words = scratch.transformer.bert.embeddings.word_embeddings.weight
    assert not torch.equal(words, ckpt["bert.embeddings.word_embeddings.weight"])
    assert abs(float(words[1:].detach().std()) - 0.02) < 0.005  # BERT init: normal(0, initializer_range)
    with pytest.raises(ValueError, match="layers 3 >"):
        build_vl_model(VLConfig(layers=3), path, TinyTower())
    with pytest.raises(FileNotFoundError, match="config.json"):
        build_vl_model(VLConfig(), path / "nowhere", TinyTower())


def test_qa_head_init_from_the_answer_table_copies_overlapping_rows(shared_data: Path) -> None:
    vocab = shared_data / "clip-vil/answer_vocab"
    vqa = json.loads((vocab / "vqa/trainval_label2ans.json").read_text())
    lxmert = [e["ans"] for e in json.loads((vocab / "lxmert/all_ans.json").read_text())]
    torch.manual_seed(0)
    pre = QAHead(4, len(lxmert)).state_dict()
    head = QAHead(4, len(vqa))
    n = init_answer_head(head, vqa, pre, lxmert, convert=convert_lxmert_answer)
    where = {a: i for i, a in enumerate(lxmert)}
    expected = {
        i: where[convert_lxmert_answer(a)] for i, a in enumerate(vqa) if convert_lxmert_answer(a) in where
    }
    assert n == len(expected) and 3000 < n < 3129  # most VQA answers are in LXMERT's table
    w, b = head.logit_fc[3].weight, head.logit_fc[3].bias
    for i in range(len(vqa)):
        if i in expected:
            assert (
                torch.equal(w[i], pre["logit_fc.3.weight"][expected[i]])
                and b[i] == pre["logit_fc.3.bias"][expected[i]]
            )
        else:
            assert not w[i].any() and b[i] == 0  # the reference zeroes answers it cannot transfer
    assert torch.equal(head.logit_fc[0].weight, pre["logit_fc.0.weight"])
    assert torch.equal(head.logit_fc[2].bias, pre["logit_fc.2.bias"])
    yes = vqa.index("yes")
    assert torch.equal(w[yes], pre["logit_fc.3.weight"][lxmert.index("yes")])
    kept = QAHead(4, len(vqa))
    rows = kept.logit_fc[3].weight.detach().clone()
    init_answer_head(kept, vqa, pre, lxmert, convert=convert_lxmert_answer, zero_missing=False)
    missing = [i for i in range(len(vqa)) if i not in expected]
    assert torch.equal(kept.logit_fc[3].weight[missing], rows[missing])
    with pytest.raises(ValueError, match="answers for a head"):
        init_answer_head(head, vqa[:10], pre, lxmert)


def _step(model: VLModel, pixels: torch.Tensor) -> dict[str, torch.Tensor]:
    ids, att = _tokens(2, 5)
    out = model.forward_pretrain(
        pixels, None, ids, att, n_visual=3, generator=torch.Generator().manual_seed(0)
    )
    (out.mlm.square().mean() + out.itm.square().mean()).backward()
    return {n: p.grad.clone() for n, p in model.visual.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("tower", ["RN50", "ViT-S-32"])
def test_visual_gradient_checkpointing_gives_the_same_gradients_and_statistics(tiny_bert, tower: str) -> None:
    pixels = torch.randn(2, 3, 64, 96)
    models = []
    for ckpt in (False, True):
        torch.manual_seed(0)
        visual = build_encoder(tower, trainable=True)
        models.append(build_vl_model(VLConfig(grad_checkpointing=ckpt), tiny_bert[0], visual).train())
    plain, ckpt = models
    assert list(plain.visual.state_dict()) == list(ckpt.visual.state_dict())  # keys unchanged by wrapping
    calls = []
    if tower == "RN50":
        ckpt.visual.visual.layer2._checkpoint_wrapped_module.register_forward_pre_hook(
            lambda *a: calls.append(1)
        )
    else:
        assert ckpt.visual.visual.transformer.grad_checkpointing
    for model in models:
        for m in model.modules():
            if isinstance(m, nn.Dropout):
                m.p = 0.0
    g_plain, g_ckpt = _step(plain, pixels), _step(ckpt, pixels)
    if tower == "RN50":
        assert len(calls) == 2  # forward, then the recomputation in backward
    assert len(g_plain) > 100 and set(g_plain) == {
        n.replace("._checkpoint_wrapped_module", "") for n in g_ckpt
    }
    for name, grad in g_ckpt.items():
        torch.testing.assert_close(
            grad, g_plain[name.replace("._checkpoint_wrapped_module", "")], rtol=1e-4, atol=1e-6
        )
    s_plain, s_ckpt = plain.visual.state_dict(), ckpt.visual.state_dict()
    for k in s_plain:  # BatchNorm running statistics updated once, as without checkpointing
        assert torch.equal(s_plain[k], s_ckpt[k]), k


def test_batchnorm_modes(tiny_bert) -> None:
    pixels = torch.randn(2, 3, 16, 16)
    ids, att = _tokens(2, 4)
    for mode, changes in (("train", True), ("frozen", False)):
        model = _tiny(tiny_bert, batchnorm=mode).train()
        assert model.visual.bn.training == changes and model.visual.conv.training
        before = model.visual.bn.running_mean.clone()
        model(pixels, None, ids, att)
        assert (not torch.equal(before, model.visual.bn.running_mean)) == changes
        pair = VLPairModel(_tiny(tiny_bert, n_answers=2, batchnorm=mode)).train()  # the NLVR2 model keeps the rule
        assert pair.visual.bn.training == changes and pair.visual.conv.training and pair.transformer.training
    with pytest.raises(ValueError, match="batchnorm must be"):
        VLConfig(batchnorm="sync")
    with pytest.raises(ValueError, match="no open_clip ModifiedResNet or VisionTransformer"):
        _tiny(tiny_bert, grad_checkpointing=True)


def test_registry_and_parameter_groups(tiny_bert) -> None:
    assert get_model("vl_transformer").family == "vl"
    model = build_model(
        "vl_transformer", overrides={"layers": 1}, bert_dir=tiny_bert[0], visual=TinyTower(), n_answers=4
    )
    assert isinstance(model, VLModel) and model.qa.n_answers == 4
    groups = model.parameter_groups()
    visual = {id(p) for p in model.visual.parameters()}
    assert {id(p) for _, p in groups["visual"]} == visual
    rest = [p for _, p in groups["transformer"]]
    assert not visual & {id(p) for p in rest}
    assert len(rest) + len(groups["visual"]) == len(list(model.parameters()))  # the tied decoder once
    finetune = build_vl_model(
        VLConfig(layers=1), tiny_bert[0], TinyTower(), n_answers=3, pretrain_heads=False
    )
    assert finetune.mlm is None and finetune.itm is None
    with pytest.raises(ValueError, match="without pre-training heads"):
        finetune.forward_pretrain(torch.zeros(1, 3, 8, 8), None, *_tokens(1, 3))


def test_minilm_loads_offline(tmp_path: Path) -> None:
    """The embedded default BERT builds with the hub unreachable and an empty cache."""
    script = (
        "import torch\n"
        "from safetensors import safe_open\n"
        "from clipvil.data.tokenizers import default_bert_dir\n"
        "from clipvil.families.vl.transformer import VLConfig, build_vl_model\n"
        "from clipvil.types import GridFeatures\n"
        "class T(torch.nn.Module):\n"
        "    dim = 4\n"
        "    def forward(self, x, hw=None):\n"
        "        return GridFeatures(x, torch.ones(x.shape[:2], dtype=torch.bool), (1, x.shape[1]))\n"
        "d = default_bert_dir()\n"
        "m = build_vl_model(VLConfig(), d, T(), n_answers=2).eval()\n"
        "f = safe_open(str(d / 'model.safetensors'), 'pt')\n"
        "for k in ('encoder.layer.5.output.dense.weight', 'embeddings.position_embeddings.weight'):\n"
        "    assert torch.equal(m.transformer.bert.state_dict()[k], f.get_tensor(k)), k\n"
        "assert torch.equal(m.transformer.pooler.dense.weight, f.get_tensor('pooler.dense.weight'))\n"
        "ids = torch.tensor([[101, 7592, 2088, 102]])\n"
        "logits = m(torch.randn(1, 3, 4), None, ids, torch.ones_like(ids))\n"
        "print(tuple(logits.shape), len(m.transformer.bert.encoder.layer))\n"
    )
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "HF_HOME": str(tmp_path / "hf"),
        "HF_ENDPOINT": "http://127.0.0.1:9",
        "OMP_NUM_THREADS": "1",
    }
    result = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split() == ["(1,", "2)", "6"]
