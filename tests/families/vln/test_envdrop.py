"""EnvDrop follower and speaker: shapes, masks, environmental dropout, parameter counts, and a port of
R2R-EnvDrop's decoder step (model.py) written here with plain tensor ops on the same weights."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from clipvil.engine.models import build_model, registered_models
from clipvil.families.vln.envdrop import (
    Follower,
    FollowerConfig,
    Speaker,
    SpeakerConfig,
    SpeakerContext,
    apply_env_drop,
    drop_visual,
)

D, A, V = 12, 128, 23  # visual width, angle width, vocabulary


def _follower(**over: object) -> Follower:
    cfg = FollowerConfig(**{**vars(FollowerConfig.preset("tiny")), **over})
    return Follower(cfg, vocab_size=V, feature_dim=D).eval()


def _inputs(b: int = 3, k: int = 4, t: int = 7) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    tokens = torch.randint(1, V, (b, t), generator=g)
    lengths = torch.tensor([t, t - 2, 3][:b])
    mask = torch.arange(t)[None, :] < lengths[:, None]
    tokens = tokens.masked_fill(~mask, 0)
    cand_mask = torch.arange(k)[None, :] <= torch.tensor([3, 1, 2][:b])[:, None]  # STOP at n_candidates
    cands = torch.randn(b, k, D + A, generator=g)
    for i in range(b):
        n = int(cand_mask[i].sum()) - 1
        cands[i, n:] = 0.0  # STOP slot and padding: zeros, as the env builds them
    return {"tokens": tokens, "mask": mask, "action": torch.randn(b, A, generator=g),
            "pano": torch.randn(b, 36, D + A, generator=g), "cands": cands, "cand_mask": cand_mask}


def test_follower_shapes_and_candidate_mask() -> None:
    m, x = _follower(), _inputs()
    ctx, state = m.encode(x["tokens"], x["mask"])
    assert ctx.shape == (3, 7, 32) and state.h_tilde.shape == (3, 32) and state.c.shape == (3, 32)
    logits, new, h = m.step(state, x["action"], x["pano"], x["cands"], x["cand_mask"], ctx, x["mask"])
    assert logits.shape == (3, 4) and h.shape == (3, 32) and new.h_tilde.shape == (3, 32)
    assert torch.isinf(logits[~x["cand_mask"]]).all() and (logits[~x["cand_mask"]] < 0).all()
    assert torch.isfinite(logits[x["cand_mask"]]).all()
    stop = x["cand_mask"].sum(1) - 1
    assert (logits[torch.arange(3), stop] == 0).all()  # the zero STOP feature scores exactly 0
    # padded candidates and padded tokens change nothing
    cands2, tokens2 = x["cands"].clone(), x["tokens"].clone()
    cands2[~x["cand_mask"]] = 99.0
    tokens2[~x["mask"]] = 5
    ctx2, state2 = m.encode(tokens2, x["mask"])
    logits2, _, _ = m.step(state2, x["action"], x["pano"], cands2, x["cand_mask"], ctx2, x["mask"])
    torch.testing.assert_close(logits2, logits)
    assert m.value(h).shape == (3,)


def _lstm_cell(x: torch.Tensor, h: torch.Tensor, c: torch.Tensor, w_ih: torch.Tensor, w_hh: torch.Tensor,
               b_ih: torch.Tensor, b_hh: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    i, f, g, o = (x @ w_ih.T + b_ih + h @ w_hh.T + b_hh).chunk(4, dim=1)
    c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
    return torch.sigmoid(o) * torch.tanh(c), c


def _port_encoder(m: Follower, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """EnvDrop's EncoderLSTM on full-length rows (no padding): bi-LSTM, h/c = [backward ; forward],
    decoder init tanh(W max_t ctx)."""
    p = dict(m.encoder.named_parameters())
    emb = p["embedding.weight"][tokens]  # [B, T, W]
    b, t, _ = emb.shape
    hid = p["lstm.weight_hh_l0"].shape[1]
    outs = {}
    for suffix, order in (("", range(t)), ("_reverse", range(t - 1, -1, -1))):
        h, c, seq = emb.new_zeros(b, hid), emb.new_zeros(b, hid), [None] * t
        for step in order:
            weights = [p[f"lstm.{k}_l0{suffix}"] for k in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]
            h, c = _lstm_cell(emb[:, step], h, c, *weights)
            seq[step] = h
        outs[suffix] = (torch.stack(seq, 1), c)
    ctx = torch.cat([outs[""][0], outs["_reverse"][0]], dim=2)  # [B, T, H]
    c_t = torch.cat([outs["_reverse"][1], outs[""][1]], dim=1)
    init = torch.tanh(ctx.max(1).values @ p["encoder2decoder.weight"].T + p["encoder2decoder.bias"])
    return ctx, init, c_t


def _port_attention(p: dict, name: str, h: torch.Tensor, context: torch.Tensor, mask: torch.Tensor | None,
                    tilde: bool) -> tuple[torch.Tensor, torch.Tensor]:
    scores = torch.einsum("blc,bc->bl", context, h @ p[f"{name}.linear_in.weight"].T)
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    weighted = torch.einsum("bl,blc->bc", torch.softmax(scores, 1), context)
    if not tilde:
        return weighted, scores
    return torch.tanh(torch.cat([weighted, h], 1) @ p[f"{name}.linear_out.weight"].T), scores


def test_follower_step_matches_a_port_of_envdrop() -> None:
    m = _follower()
    x = _inputs()
    full = torch.ones_like(x["mask"])
    tokens = torch.randint(1, V, x["tokens"].shape, generator=torch.Generator().manual_seed(3))
    ctx, init, c0 = _port_encoder(m, tokens)
    ours_ctx, state = m.encode(tokens, full)
    torch.testing.assert_close(ours_ctx, ctx)
    torch.testing.assert_close(state.h_tilde, init)
    torch.testing.assert_close(state.c, c0)
    p = dict(m.decoder.named_parameters())
    a = torch.tanh(x["action"] @ p["embedding.0.weight"].T + p["embedding.0.bias"])
    attn_feat, _ = _port_attention(p, "feat_att_layer", init, x["pano"], None, tilde=False)
    h1, c1 = _lstm_cell(torch.cat([a, attn_feat], 1), init, c0, p["lstm.weight_ih"], p["lstm.weight_hh"],
                        p["lstm.bias_ih"], p["lstm.bias_hh"])
    h_tilde, _ = _port_attention(p, "attention_layer", h1, ctx, x["mask"], tilde=True)
    _, logits = _port_attention(p, "candidate_att_layer", h_tilde, x["cands"], None, tilde=False)
    ours, new, h = m.step(state, x["action"], x["pano"], x["cands"], x["cand_mask"], ours_ctx, x["mask"])
    torch.testing.assert_close(h, h1)
    torch.testing.assert_close(new.c, c1)
    torch.testing.assert_close(new.h_tilde, h_tilde)
    torch.testing.assert_close(ours[x["cand_mask"]], logits[x["cand_mask"]])


def test_env_drop_mask_is_shared_across_views_and_candidates() -> None:
    m = _follower(feat_dropout=0.5).train()
    torch.manual_seed(0)
    mask = m.env_drop_mask(4)
    assert mask.shape == (4, D)
    assert set(mask.unique().tolist()) <= {0.0, 2.0}
    assert not torch.equal(mask[0], mask[1]) or not torch.equal(mask[1], mask[2])  # one mask per episode
    pano, cands = torch.rand(4, 36, D + A) + 1, torch.rand(4, 5, D + A) + 1
    dp, dc = apply_env_drop(pano, mask, A), apply_env_drop(cands, mask, A)
    for i in range(4):
        dropped = mask[i] == 0
        assert (dp[i, :, :D][:, dropped] == 0).all() and (dp[i, :, :D][:, ~dropped] > 0).all()
        assert (dc[i, :, :D][:, dropped] == 0).all() and (dc[i, :, :D][:, ~dropped] > 0).all()
        torch.testing.assert_close(dp[i, :, :D][:, ~dropped], 2 * pano[i, :, :D][:, ~dropped])
    torch.testing.assert_close(dp[..., D:], pano[..., D:])  # angle features untouched
    shared = m.env_drop_mask(4, shared=True)
    assert all(torch.equal(shared[0], shared[i]) for i in range(4))
    assert torch.equal(m.eval().env_drop_mask(2), torch.ones(2, D))
    # the per-step feature dropout is element-wise: different views lose different channels
    m.train()
    step = drop_visual(torch.ones(1, 36, D + A), m.decoder.drop_env, A)
    assert not all(torch.equal(step[0, 0, :D] == 0, step[0, v, :D] == 0) for v in range(1, 36))


def _lstm_params(inp: int, hid: int, dirs: int) -> int:
    return dirs * (4 * hid * (inp + hid) + 2 * 4 * hid)


def test_parameter_counts_of_the_paper_presets() -> None:
    vocab, d = 991, 512
    f = d + 128
    follower = Follower(FollowerConfig.preset("envdrop"), vocab_size=vocab, feature_dim=d)
    encoder = vocab * 256 + _lstm_params(256, 256, 2) + 512 * 512 + 512

    def attn(q: int, c: int) -> int:  # linear_in + linear_out, no biases
        return q * c + (q + c) * q

    cell = 4 * 512 * (64 + f) + 4 * 512 * 512 + 2 * 4 * 512
    decoder = (128 * 64 + 64) + cell + 2 * attn(512, f) + attn(512, 512)
    critic = 512 * 512 + 512 + 512 + 1
    assert sum(p.numel() for p in follower.parameters()) == encoder + decoder + critic
    speaker = Speaker(SpeakerConfig.preset("envdrop"), vocab_size=vocab, feature_dim=d)
    s_encoder = _lstm_params(f, 256, 2) + attn(512, f) + _lstm_params(512, 256, 2)
    baseline = 512 * 128 + 128 + 128 + 1
    s_decoder = vocab * 256 + _lstm_params(256, 512, 1) + attn(512, 512) + 512 * vocab + vocab + baseline
    assert sum(p.numel() for p in speaker.parameters()) == s_encoder + s_decoder


def test_registry_builds_both() -> None:
    assert {"envdrop_follower", "envdrop_speaker"} <= set(registered_models("nav"))
    m = build_model("envdrop_follower", "tiny", {"feat_dropout": 0.4}, vocab_size=V, feature_dim=D)
    assert isinstance(m, Follower) and m.cfg.feat_dropout == 0.4 and m.cfg.hidden == 32
    s = build_model("envdrop_speaker", "envdrop", vocab_size=V, feature_dim=D)
    assert isinstance(s, Speaker) and s.cfg.dropout == 0.6


def _speaker_context(b: int = 2, length: int = 4) -> SpeakerContext:
    g = torch.Generator().manual_seed(2)
    mask = torch.arange(length)[None, :] < torch.tensor([length, 2][:b])[:, None]
    return SpeakerContext(torch.randn(b, length, D + A, generator=g),
                          torch.randn(b, length, 36, D + A, generator=g), mask)


def test_speaker_teacher_forcing_equals_incremental_steps() -> None:
    s = Speaker(SpeakerConfig.preset("tiny"), vocab_size=V, feature_dim=D).eval()
    ctxt = _speaker_context()
    tokens = torch.randint(1, V, (2, 6), generator=torch.Generator().manual_seed(4))
    logits = s(ctxt, tokens)
    assert logits.shape == (2, 6, V)
    state = s.init_state(ctxt, 3)  # rows 0,1,2 = path 0; 3,4,5 = path 1
    assert state.ctx.shape[0] == 6 and state.h.shape == (1, 6, 32)
    rows = tokens.repeat_interleave(3, dim=0)  # [6, T]
    for t in range(6):
        logp, state = s.step(rows[:, t], state)
        torch.testing.assert_close(logp, F.log_softmax(logits[:, t], -1).repeat_interleave(3, dim=0))
    moved = s.reorder_state(state, torch.tensor([5, 0]))
    torch.testing.assert_close(moved.h[:, 0], state.h[:, 5])
    torch.testing.assert_close(moved.ctx[1], state.ctx[0])
    # padded path steps do not matter
    noisy = SpeakerContext(ctxt.actions.masked_fill(~ctxt.mask[..., None], 7.0), ctxt.panoramas, ctxt.mask)
    torch.testing.assert_close(s(noisy, tokens), logits)


def test_speaker_with_the_shared_decoding_functions() -> None:
    from clipvil.nn.decoding import beam_search, greedy_decode

    s = Speaker(SpeakerConfig.preset("tiny"), vocab_size=V, feature_dim=D).eval()
    ctxt = _speaker_context()
    out = greedy_decode(s, ctxt, 2, bos=1, eos=2, max_len=8)
    # greedy by hand
    state, tok, expected = s.init_state(ctxt, 1), torch.ones(2, dtype=torch.long), []
    for _ in range(int(out.lengths.max())):
        logp, state = s.step(tok, state)
        tok = logp.argmax(-1)
        expected.append(tok)
    hand = torch.stack(expected, 1)
    assert torch.equal(out.tokens[out.mask], hand[out.mask])
    beams = beam_search(s, ctxt, 2, beam_size=3, bos=1, eos=2, max_len=8)
    assert beams.tokens.shape[0] == 2 and bool((beams.scores >= out.scores - 1e-5).all())
