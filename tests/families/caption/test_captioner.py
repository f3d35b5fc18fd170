"""The Transformer captioner: against a port of the reference's forward pass, its own full recomputation
(incremental decoding), padding, normalisation, the paper's parameter count, and the decoding functions."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from clipvil.engine.models import build_model, get_model
from clipvil.families.caption.model import CaptionerConfig, CaptionMemory, TransformerCaptioner
from clipvil.nn.decoding import IncrementalDecoder, beam_search, greedy_decode, sample_decode
from clipvil.types import GridFeatures

PAD, BOS, EOS = 0, 1, 2  # clipvil.data.tokenizers.CaptionVocab's ids
C, V = 12, 23  # grid width, vocabulary size of the tiny models


def _model(seed: int = 0, **overrides) -> TransformerCaptioner:
    torch.manual_seed(seed)
    cfg = CaptionerConfig(**{**vars(CaptionerConfig.preset("tiny")), **overrides})
    return TransformerCaptioner(cfg, grid_dim=C, vocab_size=V).eval()


def _grid(b: int = 3, hw: tuple[int, int] = (2, 3), seed: int = 1) -> GridFeatures:
    """Random grid; item 1 has its last two cells padded (filled with huge values)."""
    g = torch.Generator().manual_seed(seed)
    n = hw[0] * hw[1]
    feats = torch.randn(b, n, C, generator=g)  # [B, N, C]
    mask = torch.ones(b, n, dtype=torch.bool)
    if b > 1:
        mask[1, -2:] = False
        feats[1, -2:] = 1e6
    return GridFeatures(feats, mask, hw)


def _tokens(rows: int, length: int, seed: int = 2) -> torch.Tensor:
    tokens = torch.randint(3, V, (rows, length), generator=torch.Generator().manual_seed(seed))  # [R, L]
    tokens[:, 0] = BOS
    return tokens


# --- a port of the reference's forward pass (self-critical.pytorch TransformerModel, eval mode) -------------


def _ref_attention(linears, query, key, mask, heads):
    b, d = query.shape[0], query.shape[-1]
    dk = d // heads
    q, k, v = (lin(x).view(b, -1, heads, dk).transpose(1, 2) for lin, x in zip(linears, (query, key, key)))
    scores = q @ k.transpose(-2, -1) / math.sqrt(dk)  # [B, h, Lq, Lk]
    scores = scores.masked_fill(mask.unsqueeze(1) == 0, float("-inf"))
    x = scores.softmax(-1) @ v  # [B, h, Lq, dk]
    return linears[-1](x.transpose(1, 2).reshape(b, -1, d))


def _ref_ff(ff, x):
    return ff.w_2(F.relu(ff.w_1(x)))


def _sinusoid(length: int, d: int) -> torch.Tensor:
    pe = torch.zeros(length, d)
    for pos in range(length):
        for i in range(0, d, 2):
            pe[pos, i] = math.sin(pos / 10000 ** (i / d))
            pe[pos, i + 1] = math.cos(pos / 10000 ** (i / d))
    return pe


def _reference_forward(model: TransformerCaptioner, grid: GridFeatures, seq: torch.Tensor) -> torch.Tensor:
    """Encoder-decoder as make_model builds it: pre-norm sublayers, final norms, sqrt(d)-scaled words."""
    h, d = model.cfg.heads, model.cfg.d_model
    x = F.relu(model.att_embed[0](grid.feats))  # padded cells are masked below, as their packing drops them
    src_mask = grid.mask[:, None, :]  # [B, 1, N]
    for layer in model.encoder.layers:
        n0, n1 = (s.norm for s in layer.sublayer)
        x = x + _ref_attention(layer.self_attn.linears, n0(x), n0(x), src_mask, h)
        x = x + _ref_ff(layer.feed_forward, n1(x))
    memory = model.encoder.norm(x)
    length = seq.shape[1]
    tgt_mask = (seq != EOS) & (seq != PAD)
    tgt_mask[:, 0] = True
    tgt_mask = tgt_mask[:, None, :] & torch.tril(torch.ones(length, length, dtype=torch.bool))  # [B, L, L]
    y = model.tgt_embed.lut(seq) * math.sqrt(d) + _sinusoid(length, d)
    for layer in model.decoder.layers:
        n0, n1, n2 = (s.norm for s in layer.sublayer)
        y = y + _ref_attention(layer.self_attn.linears, n0(y), n0(y), tgt_mask, h)
        y = y + _ref_attention(layer.src_attn.linears, n1(y), memory, src_mask, h)
        y = y + _ref_ff(layer.feed_forward, n2(y))
    return F.log_softmax(model.generator.proj(model.decoder.norm(y)), dim=-1)


def test_forward_matches_the_reference_port() -> None:
    model, grid = _model(), _grid()
    grid.feats[1, -2:] = 0.0  # the port has no zeroing of padded cells; their packing never sees them
    tokens = _tokens(3, 6)
    torch.testing.assert_close(
        model(grid, tokens), _reference_forward(model, grid, tokens), atol=1e-5, rtol=1e-5
    )


# --- incremental decoding, padding, shapes ------------------------------------------------------------------


@pytest.mark.parametrize("expand", [1, 2])
def test_incremental_steps_equal_full_recomputation(expand: int) -> None:
    model, grid = _model(), _grid()
    tokens = _tokens(3 * expand, 7)  # rows b*E .. b*E+E-1 caption image b
    full = model(grid, tokens)  # [R, L, V]
    state = model.init_state(model.encode(grid), expand)
    for t in range(tokens.shape[1]):
        logp, state = model.step(tokens[:, t], state)  # [R, V]
        torch.testing.assert_close(logp, full[:, t], atol=1e-5, rtol=0)
        prefix = model(grid, tokens[:, : t + 1])[:, t]  # forward over the prefix only
        torch.testing.assert_close(logp, prefix, atol=1e-5, rtol=0)
    assert state.position == 7
    assert state.self_kv[0][0].shape == (3 * expand, 4, 7, 8)  # every position cached once, [M, h, t, dh]


def test_padded_cells_change_nothing() -> None:
    model, grid = _model(), _grid()
    tokens = _tokens(3, 5)
    out = model(grid, tokens)
    alone = GridFeatures(grid.feats[1:2, :-2], grid.mask[1:2, :-2], (1, 4))  # item 1's real cells only
    torch.testing.assert_close(out[1:2], model(alone, tokens[1:2]), atol=1e-5, rtol=0)
    garbage = grid.feats.clone()
    garbage[1, -2:] = float("nan")
    out_nan = model(GridFeatures(garbage, grid.mask, grid.hw), tokens)
    torch.testing.assert_close(out_nan, out)


def test_teacher_forced_log_probs_shape_normalisation_and_causality() -> None:
    model, grid = _model(), _grid()
    tokens = _tokens(6, 5)  # 2 captions per image
    tokens[0, 3:] = PAD
    out = model(grid, tokens)
    assert out.shape == (6, 5, V)
    torch.testing.assert_close(out.logsumexp(-1), torch.zeros(6, 5), atol=1e-5, rtol=0)
    changed = tokens.clone()
    changed[:, 3] = 4
    later = model(grid, changed)
    torch.testing.assert_close(later[:, :3], out[:, :3])  # positions 0..2 never see token 3
    assert not torch.allclose(later[:, 3], out[:, 3])
    first_image = model(GridFeatures(grid.feats[:1], grid.mask[:1], grid.hw), tokens[:2])
    torch.testing.assert_close(out[:2], first_image, atol=1e-5, rtol=0)  # rows 0, 1 belong to image 0
    with pytest.raises(ValueError, match="4 caption rows are not a multiple of 3 images"):
        model(grid, tokens[:4])


def _linear(i: int, o: int) -> int:
    return i * o + o


def test_paper_preset_parameter_count_by_hand() -> None:
    d, ff, layers, grid_dim, vocab = 512, 2048, 6, 2048, 9487 + 4
    norm = 2 * d
    attn = 4 * _linear(d, d)
    ffn = _linear(d, ff) + _linear(ff, d)
    encoder = layers * (attn + ffn + 2 * norm) + norm
    decoder = layers * (2 * attn + ffn + 3 * norm) + norm
    expected = _linear(grid_dim, d) + encoder + decoder + vocab * d + _linear(d, vocab)
    with torch.device("meta"):
        model = TransformerCaptioner(CaptionerConfig.preset("paper"), grid_dim=grid_dim, vocab_size=vocab)
    assert sum(p.numel() for p in model.parameters()) == expected
    cfg = CaptionerConfig.preset("paper")
    assert (cfg.enc_layers, cfg.dec_layers, cfg.d_model, cfg.heads, cfg.d_ff, cfg.dropout) == (
        6,
        6,
        512,
        8,
        2048,
        0.1,
    )


def test_registry_presets_and_bad_config() -> None:
    entry = get_model("transformer_captioner")
    assert entry.family == "caption" and entry.config_cls is CaptionerConfig
    model = build_model("transformer_captioner", "tiny", {"dec_layers": 1}, grid_dim=C, vocab_size=V)
    assert isinstance(model, TransformerCaptioner) and len(model.decoder.layers) == 1
    with pytest.raises(ValueError, match="unknown captioner preset 'huge'"):
        CaptionerConfig.preset("huge")
    with pytest.raises(ValueError, match="d_model 30 is not divisible by heads 8"):
        CaptionerConfig(d_model=30)
    with pytest.raises(ValueError, match="position 32 is beyond max_positions 32"):
        _model()(_grid(), _tokens(3, 33))


# --- the decoding functions on the captioner -------------------------------------------------------------------


class Recompute:
    """The same captioner decoded by re-running `decode` over the whole prefix at every step (no cache)."""

    def __init__(self, model: TransformerCaptioner) -> None:
        self.model = model

    def init_state(self, context: CaptionMemory, expand: int):
        memory = context.memory.repeat_interleave(expand, 0)  # [M, N, d]
        mask = context.mask.repeat_interleave(expand, 0)  # [M, N]
        return memory, mask, torch.zeros(memory.shape[0], 0, dtype=torch.long)

    def step(self, tokens, state):
        memory, mask, prefix = state
        prefix = torch.cat([prefix, tokens[:, None]], dim=1)  # [M, t+1]
        return self.model.decode(CaptionMemory(memory, mask), prefix)[:, -1], (memory, mask, prefix)

    def reorder_state(self, state, index):
        return tuple(x[index] for x in state)


def _strong_eos(model: TransformerCaptioner) -> TransformerCaptioner:
    """Makes eos likely enough that decoded lengths vary (finished rows leave the batch mid-way)."""
    with torch.no_grad():
        model.generator.proj.bias[EOS] += 2.5
    return model


@torch.no_grad()
def test_decoding_functions_equal_their_recomputing_twins() -> None:
    model, grid = _strong_eos(_model()), _grid()
    assert isinstance(model, IncrementalDecoder)
    ctx = model.encode(grid)
    ref = Recompute(model)
    g_ours = greedy_decode(model, ctx, 3, bos=BOS, eos=EOS, max_len=9)
    g_ref = greedy_decode(ref, ctx, 3, bos=BOS, eos=EOS, max_len=9)
    assert torch.equal(g_ours.tokens, g_ref.tokens)
    torch.testing.assert_close(g_ours.logprobs, g_ref.logprobs, atol=1e-5, rtol=0)
    b_ours = beam_search(model, ctx, 3, beam_size=3, bos=BOS, eos=EOS, max_len=9, length_penalty=0.5)
    b_ref = beam_search(ref, ctx, 3, beam_size=3, bos=BOS, eos=EOS, max_len=9, length_penalty=0.5)
    assert torch.equal(b_ours.beams.tokens, b_ref.beams.tokens)
    torch.testing.assert_close(b_ours.beams.scores, b_ref.beams.scores, atol=1e-5, rtol=0)
    s_ours = sample_decode(
        model,
        ctx,
        3,
        n=4,
        temperature=1.0,
        bos=BOS,
        eos=EOS,
        max_len=9,
        generator=torch.Generator().manual_seed(0),
    )
    s_ref = sample_decode(
        ref,
        ctx,
        3,
        n=4,
        temperature=1.0,
        bos=BOS,
        eos=EOS,
        max_len=9,
        generator=torch.Generator().manual_seed(0),
    )
    assert torch.equal(s_ours.tokens, s_ref.tokens)
    assert len(set(s_ours.lengths.tolist())) > 1  # rows did finish at different steps
    torch.testing.assert_close(s_ours.logprobs, s_ref.logprobs, atol=1e-5, rtol=0)


@torch.no_grad()
def test_decoding_a_batch_equals_decoding_each_image() -> None:
    model, grid = _strong_eos(_model()), _grid()
    ctx = model.encode(grid)
    greedy = greedy_decode(model, ctx, 3, bos=BOS, eos=EOS, max_len=9)
    beam = beam_search(model, ctx, 3, beam_size=3, bos=BOS, eos=EOS, max_len=9)
    for b in range(3):
        one = CaptionMemory(ctx.memory[b : b + 1], ctx.mask[b : b + 1])
        g1 = greedy_decode(model, one, 1, bos=BOS, eos=EOS, max_len=9)
        n = int(g1.lengths[0])
        assert greedy.tokens[b, :n].tolist() == g1.tokens[0, :n].tolist() and greedy.lengths[b] == n
        b1 = beam_search(model, one, 1, beam_size=3, bos=BOS, eos=EOS, max_len=9)
        torch.testing.assert_close(b1.beams.scores, beam.beams.scores[3 * b : 3 * b + 3], atol=1e-5, rtol=0)


def test_reorder_state_shares_memory_within_images_and_gathers_otherwise() -> None:
    model = _model()
    state = model.init_state(model.encode(_grid()), 2)  # 6 rows, memory of 3 images
    within = model.reorder_state(state, torch.tensor([1, 1, 2, 3, 5, 4]))
    assert within.group == 2 and within.cross_kv[0][0] is state.cross_kv[0][0]
    dropped = model.reorder_state(state, torch.tensor([0, 3, 5]))
    assert dropped.group == 1
    torch.testing.assert_close(dropped.cross_kv[0][0], state.cross_kv[0][0][[0, 1, 2]])
    assert torch.equal(dropped.mask, state.mask[[0, 1, 2]])


def test_sampled_log_probs_backpropagate_into_the_model() -> None:
    model = _model().train()
    grid = _grid()
    out = sample_decode(
        model,
        model.encode(grid),
        3,
        n=2,
        temperature=1.0,
        bos=BOS,
        eos=EOS,
        max_len=5,
        generator=torch.Generator().manual_seed(0),
    )
    (-(out.logprobs * out.mask).sum()).backward()
    assert model.generator.proj.weight.grad is not None and model.generator.proj.weight.grad.abs().sum() > 0
    assert model.att_embed[0].weight.grad.abs().sum() > 0  # through the cross-attention memory
