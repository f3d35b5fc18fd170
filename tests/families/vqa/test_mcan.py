"""MCAN against the sizes of MILVLG/mcan-vqa and against torch's own transformer layers."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from clipvil.families.vqa import MCAN, MCANConfig
from clipvil.families.vqa.mcan import GuidedAttentionLayer, MultiHeadAttention, SelfAttentionLayer


def _linear(i: int, o: int) -> int:
    return i * o + o


def _mcan_vqa_param_count(hidden: int, flat_out: int, grid_dim: int, vocab: int, answers: int) -> int:
    """Parameters of mcan-vqa's Net (core/model/net.py, mca.py) from its layer sizes (cfgs/*_model.yml,
    base_cfgs.py: WORD_EMBED_SIZE 300, FF_SIZE 4*HIDDEN, FLAT_MLP_SIZE 512, FLAT_GLIMPSES 1, LAYER 6)."""
    ff, words, layers, flat_mlp = 4 * hidden, 300, 6, 512
    layer_norm = 2 * hidden
    embedding = vocab * words
    lstm = 4 * hidden * (words + hidden) + 2 * 4 * hidden  # W_ih, W_hh, b_ih, b_hh
    img_feat_linear = _linear(grid_dim, hidden)
    mhatt = 4 * _linear(hidden, hidden)  # linear_v, linear_k, linear_q, linear_merge
    ffn = _linear(hidden, ff) + _linear(ff, hidden)
    sa = mhatt + ffn + 2 * layer_norm
    sga = 2 * mhatt + ffn + 3 * layer_norm
    attflat = _linear(hidden, flat_mlp) + _linear(flat_mlp, 1) + _linear(hidden, flat_out)
    head = 2 * flat_out + _linear(flat_out, answers)  # proj_norm, proj
    return embedding + lstm + img_feat_linear + layers * (sa + sga) + 2 * attflat + head


@pytest.mark.parametrize(("preset", "hidden", "flat_out"), [("small", 512, 1024), ("large", 1024, 2048)])
def test_parameter_count_matches_mcan_vqa(preset: str, hidden: int, flat_out: int) -> None:
    with torch.device("meta"):
        model = MCAN(MCANConfig.preset(preset), grid_dim=2048, vocab_size=20573, n_answers=3129)
    ours = sum(p.numel() for p in model.parameters())
    assert ours == _mcan_vqa_param_count(hidden, flat_out, 2048, 20573, 3129)


def test_presets_and_bad_config() -> None:
    assert MCANConfig.preset("small") == MCANConfig()
    with pytest.raises(ValueError, match="unknown MCAN preset 'huge'"):
        MCANConfig.preset("huge")
    with pytest.raises(ValueError, match="hidden 100 is not divisible by heads 8"):
        MCANConfig(hidden=100)


def test_attention_matches_the_formula() -> None:
    att = MultiHeadAttention(dim=12, heads=3, dropout=0.0).eval()
    q_in, kv_in = torch.randn(2, 4, 12), torch.randn(2, 5, 12)  # [B, Lq, D], [B, Lk, D]
    key_mask = torch.tensor([[True, True, False, True, False], [True] * 5])  # [B, Lk]
    q = att.linear_q(q_in).view(2, 4, 3, 4)  # [B, Lq, h, d]
    k = att.linear_k(kv_in).view(2, 5, 3, 4)  # [B, Lk, h, d]
    v = att.linear_v(kv_in).view(2, 5, 3, 4)  # [B, Lk, h, d]
    scores = torch.einsum("bqhd,bkhd->bhqk", q, k) / math.sqrt(4)  # [B, h, Lq, Lk]
    scores = scores.masked_fill(~key_mask[:, None, None, :], -1e9)
    heads = torch.einsum("bhqk,bkhd->bqhd", scores.softmax(-1), v).reshape(2, 4, 12)  # [B, Lq, D]
    torch.testing.assert_close(att(q_in, kv_in, key_mask), att.linear_merge(heads))


def _copy_attention(ours: MultiHeadAttention, theirs: nn.MultiheadAttention) -> None:
    with torch.no_grad():
        theirs.in_proj_weight.copy_(
            torch.cat([ours.linear_q.weight, ours.linear_k.weight, ours.linear_v.weight])
        )
        theirs.in_proj_bias.copy_(torch.cat([ours.linear_q.bias, ours.linear_k.bias, ours.linear_v.bias]))
        theirs.out_proj.load_state_dict(ours.linear_merge.state_dict())


def _copy_ffn_and_norms(ours: nn.Module, theirs: nn.Module, n_norms: int) -> None:
    theirs.linear1.load_state_dict(ours.ffn.fc.state_dict())
    theirs.linear2.load_state_dict(ours.ffn.out.state_dict())
    for i in range(1, n_norms + 1):
        getattr(theirs, f"norm{i}").load_state_dict(getattr(ours, f"norm{i}").state_dict())


def test_sa_and_sga_layers_equal_torch_post_norm_transformer_layers() -> None:
    cfg = MCANConfig(hidden=16, ff=40, heads=4, layers=1)
    sa, sga = SelfAttentionLayer(cfg).eval(), GuidedAttentionLayer(cfg).eval()
    kw = {
        "d_model": 16,
        "nhead": 4,
        "dim_feedforward": 40,
        "dropout": 0.0,
        "layer_norm_eps": 1e-6,
        "batch_first": True,
    }
    enc, dec = nn.TransformerEncoderLayer(**kw).eval(), nn.TransformerDecoderLayer(**kw).eval()
    _copy_attention(sa.attn, enc.self_attn)
    _copy_ffn_and_norms(sa, enc, 2)
    _copy_attention(sga.self_attn, dec.self_attn)
    _copy_attention(sga.guided_attn, dec.multihead_attn)
    _copy_ffn_and_norms(sga, dec, 3)

    x, x_mask = (
        torch.randn(2, 5, 16),
        torch.tensor([[True] * 5, [True, True, True, False, False]]),
    )  # question
    y, y_mask = torch.randn(2, 7, 16), torch.tensor([[True] * 7, [True] * 4 + [False] * 3])  # grid
    with torch.no_grad():
        ours_x = sa(x, x_mask)  # [B, T, H]
        ours_y = sga(y, y_mask, ours_x, x_mask)  # [B, N, H]
        ref_x = enc(x, src_key_padding_mask=~x_mask)  # [B, T, H]
        ref_y = dec(y, ref_x, tgt_key_padding_mask=~y_mask, memory_key_padding_mask=~x_mask)  # [B, N, H]
    torch.testing.assert_close(ours_x[x_mask], ref_x[x_mask], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(ours_y[y_mask], ref_y[y_mask], atol=1e-5, rtol=1e-5)


def test_word_vectors_hook_reaches_the_question_embedding() -> None:
    model = MCAN(
        MCANConfig(hidden=16, ff=32, heads=2, layers=1, word_dim=8), grid_dim=4, vocab_size=10, n_answers=3
    )
    vectors = torch.randn(10, 8)  # [vocab, word_dim]
    model.question.load_word_vectors(vectors)
    assert torch.equal(model.question.embedding.weight, vectors)
