"""EnvDrop (Tan et al., NAACL 2019) follower and speaker over per-view features (CLIP-ViL's VLN agent).

Structure, sizes and parameter names follow airsplay/R2R-EnvDrop r2r_src/model.py (which CLIP-ViL-VLN
uses unchanged), so its "encoder"/"decoder"/"critic" state dicts load into `Follower.encoder/decoder/critic`
and the speaker's into `Speaker.encoder/decoder`, name for name. F = D + angle_dim is the width of a view
(D visual channels, then the angle feature, as clipvil.data.nav_env builds them).

Follower:
    instruction: Embedding(V, 256) → Dropout → bi-LSTM (256 per direction)                 ctx [B, T, 512]
    init:        tanh(Linear(max over ctx)) ("max", CLIP-ViL's --subout max) or of the last states
    each step:   a = tanh(Linear(angle feature of the agent's heading → 64))
                 panorama attention (query: previous h~) → LSTMCell([a ; attended view], (h~, c)) → h
                 h~ = tanh(Linear([attended ctx ; h]))  (attention over the instruction, query h)
                 logits = <Linear(h~), candidate features>  (STOP has the zero feature: logit 0)
    critic:      Linear → ReLU → Dropout → Linear on h (A2C's value)
Speaker: bi-LSTM over the path's chosen candidate features, attention of each step over its 36 views,
    bi-LSTM; decoder: Embedding → LSTM → attention over the path → Linear(V); decodes with
    clipvil.nn.decoding (init_state / step / reorder_state).

Dropout of features (EnvDrop's two uses of `drop_env`, p = feat_dropout, on the D visual channels only):
- feature dropout: every step, an independent element-wise mask on the panorama and on the candidates;
- environmental dropout (`env_drop_mask`): one channel mask [D] per episode, the same for every view of
  every viewpoint (and for the speaker, when back-translating), then passed with already_dropped=True.
  EnvDrop's code draws one mask for the whole batch; `shared=True` reproduces that exactly.

Deviations from R2R-EnvDrop, on purpose:
- masks are True on real elements (EnvDrop: True on padding); invalid candidates get -inf logits here
  (EnvDrop fills them in the agent);
- the "max" initialisation takes the max over real tokens only (EnvDrop's includes the zero padding of
  shorter instructions in the batch, so its result depended on the batch);
- the speaker's encoder LSTMs run packed to each path's length (EnvDrop's also ran over padded steps);
- inputs are never modified in place.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from clipvil.engine.models import register_model


@dataclass(frozen=True)
class FollowerConfig:
    """Architecture of the EnvDrop follower (vocabulary and feature sizes are constructor arguments)."""

    word_dim: int = 256  # instruction word embedding (--wemb)
    hidden: int = 512  # decoder LSTM width; the bidirectional encoder has hidden/2 per direction (--rnnDim)
    action_dim: int = 64  # embedding of the agent's heading/elevation angle feature (--aemb)
    angle_dim: int = 128  # angle feature width appended to each view (--angleFeatSize)
    dropout: float = 0.5  # on embeddings, states and contexts (--dropout)
    feat_dropout: float = 0.3  # feature / environmental dropout on visual channels (--featdropout)
    bidirectional: bool = True  # bidirectional instruction encoder (--bidir)
    sub_out: str = "max"  # decoder init from the max over ctx ("max") or from the last states ("tanh")

    def __post_init__(self) -> None:
        if self.sub_out not in ("max", "tanh"):
            raise ValueError(f"FollowerConfig: sub_out must be 'max' or 'tanh', got {self.sub_out!r}")
        if self.bidirectional and self.hidden % 2:
            raise ValueError(f"FollowerConfig: hidden {self.hidden} must be even for a bidirectional encoder")

    @classmethod
    def preset(cls, name: str) -> FollowerConfig:
        """'envdrop' (the paper's and CLIP-ViL's R2R/RxR runs) or 'tiny' (tests)."""
        return _preset(FOLLOWER_PRESETS, name, "follower")


@dataclass(frozen=True)
class SpeakerConfig:
    """Architecture of the EnvDrop speaker (vocabulary and feature sizes are constructor arguments)."""

    word_dim: int = 256  # word embedding of the decoder (--wemb)
    hidden: int = 512  # encoder output and decoder LSTM width (--rnnDim)
    angle_dim: int = 128  # angle feature width appended to each view (--angleFeatSize)
    dropout: float = 0.6  # run/speaker.bash's --dropout
    feat_dropout: float = 0.3  # feature dropout on visual channels (--featdropout)
    bidirectional: bool = True  # bidirectional path encoder LSTMs (--bidir)

    @classmethod
    def preset(cls, name: str) -> SpeakerConfig:
        """'envdrop' (the paper's speaker) or 'tiny' (tests)."""
        return _preset(SPEAKER_PRESETS, name, "speaker")


def _preset(table: dict[str, Any], name: str, what: str) -> Any:
    if name not in table:
        raise ValueError(f"unknown EnvDrop {what} preset {name!r}; known: {sorted(table)}")
    return table[name]


FOLLOWER_PRESETS = {"envdrop": FollowerConfig(), "tiny": FollowerConfig(word_dim=16, hidden=32, action_dim=8)}
SPEAKER_PRESETS = {"envdrop": SpeakerConfig(), "tiny": SpeakerConfig(word_dim=16, hidden=32)}


# ----------------------------------------------------------------------------------------------- blocks


def drop_visual(x: torch.Tensor, dropout: nn.Module, angle_dim: int) -> torch.Tensor:
    """`dropout` on the visual channels [..., :-angle_dim]; the angle feature passes untouched."""
    return torch.cat([dropout(x[..., :-angle_dim]), x[..., -angle_dim:]], dim=-1)  # [..., F]


def apply_env_drop(x: torch.Tensor, mask: torch.Tensor, angle_dim: int) -> torch.Tensor:
    """x [B, ..., D + A] with its visual channels multiplied by the episode's channel mask [B, D]."""
    view = mask.reshape(mask.shape[0], *([1] * (x.dim() - 2)), mask.shape[1])  # [B, 1.., D]
    return torch.cat([x[..., :-angle_dim] * view, x[..., -angle_dim:]], dim=-1)  # [B, ..., F]


class SoftDotAttention(nn.Module):
    """Luong's dot attention: scores <W_in h, context_j>; output tanh(W_out [weighted ctx ; h]) or raw."""

    def __init__(self, query_dim: int, ctx_dim: int) -> None:
        super().__init__()
        self.linear_in = nn.Linear(query_dim, ctx_dim, bias=False)
        self.linear_out = nn.Linear(query_dim + ctx_dim, query_dim, bias=False)

    def forward(self, h: torch.Tensor, context: torch.Tensor, mask: torch.Tensor | None = None,
                output_tilde: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        """h [N, Q], context [N, L, C], mask [N, L] (True = real) -> (h~ [N, Q] or weighted ctx [N, C],
        scores [N, L] with -inf where masked)."""
        scores = torch.bmm(context, self.linear_in(h).unsqueeze(2)).squeeze(2)  # [N, L]
        if mask is not None:
            scores = scores.masked_fill(~mask, float("-inf"))  # [N, L]
        attn = torch.softmax(scores, dim=1)  # [N, L]
        weighted = torch.bmm(attn.unsqueeze(1), context).squeeze(1)  # [N, C]
        if not output_tilde:
            return weighted, scores
        return torch.tanh(self.linear_out(torch.cat([weighted, h], dim=1))), scores  # [N, Q]


def _run_lstm(lstm: nn.LSTM, x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor,
                                                                           torch.Tensor]:
    """A batch-first LSTM over x [B, T, I] packed to each row's length (mask [B, T], real steps first);
    outputs [B, T, H*dirs] (zeros after the end) and final (h, c) [layers*dirs, B, H]."""
    lengths = mask.sum(dim=1)  # [B]
    if bool((lengths == 0).any()):
        raise ValueError("EnvDrop: a sequence has no real step (empty mask row)")
    packed = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
    out, (h, c) = lstm(packed)
    out, _ = pad_packed_sequence(out, batch_first=True, total_length=x.shape[1])  # [B, T, H*dirs]
    return out, h, c


class EncoderLSTM(nn.Module):
    """Instruction encoder: tokens [B, T] -> ctx [B, T, H], decoder initial (h~, c) [B, H] each."""

    def __init__(self, cfg: FollowerConfig, vocab_size: int, padding_idx: int) -> None:
        super().__init__()
        self.sub_out = cfg.sub_out
        dirs = 2 if cfg.bidirectional else 1
        self.embedding = nn.Embedding(vocab_size, cfg.word_dim, padding_idx)
        self.lstm = nn.LSTM(cfg.word_dim, cfg.hidden // dirs, batch_first=True,
                            bidirectional=cfg.bidirectional)
        self.encoder2decoder = nn.Linear(cfg.hidden, cfg.hidden)
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, tokens: torch.Tensor, mask: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        embeds = self.drop(self.embedding(tokens))  # [B, T, W]
        ctx, h_n, c_n = _run_lstm(self.lstm, embeds, mask)  # [B, T, H], [dirs, B, H/dirs]
        h_t = torch.cat([h_n[-1], h_n[-2]], dim=1) if h_n.shape[0] == 2 else h_n[-1]  # [B, H] backward first
        c_t = torch.cat([c_n[-1], c_n[-2]], dim=1) if c_n.shape[0] == 2 else c_n[-1]  # [B, H]
        if self.sub_out == "max":
            pooled = ctx.masked_fill(~mask.unsqueeze(-1), float("-inf")).max(dim=1).values  # [B, H]
        else:
            pooled = h_t
        return self.drop(ctx), torch.tanh(self.encoder2decoder(pooled)), c_t  # [B, T, H], [B, H], [B, H]


class AttnDecoderLSTM(nn.Module):
    """One navigation step (EnvDrop's decoder): returns h, c, candidate logits, h~."""

    def __init__(self, cfg: FollowerConfig, feature_size: int) -> None:
        super().__init__()
        self.angle_dim = cfg.angle_dim
        self.embedding = nn.Sequential(nn.Linear(cfg.angle_dim, cfg.action_dim), nn.Tanh())
        self.drop = nn.Dropout(cfg.dropout)
        self.drop_env = nn.Dropout(cfg.feat_dropout)
        self.lstm = nn.LSTMCell(cfg.action_dim + feature_size, cfg.hidden)
        self.feat_att_layer = SoftDotAttention(cfg.hidden, feature_size)
        self.attention_layer = SoftDotAttention(cfg.hidden, cfg.hidden)
        self.candidate_att_layer = SoftDotAttention(cfg.hidden, feature_size)

    def forward(self, action: torch.Tensor, panorama: torch.Tensor, candidates: torch.Tensor,
                candidate_mask: torch.Tensor, prev_h1: torch.Tensor, c_0: torch.Tensor, ctx: torch.Tensor,
                ctx_mask: torch.Tensor, already_dropped: bool = False
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        action_embeds = self.drop(self.embedding(action))  # [B, a]
        if not already_dropped:
            panorama = drop_visual(panorama, self.drop_env, self.angle_dim)  # [B, 36, F]
        attn_feat, _ = self.feat_att_layer(self.drop(prev_h1), panorama, output_tilde=False)  # [B, F]
        h_1, c_1 = self.lstm(torch.cat([action_embeds, attn_feat], dim=1), (prev_h1, c_0))  # [B, H] each
        h_tilde, _ = self.attention_layer(self.drop(h_1), ctx, ctx_mask)  # [B, H]
        if not already_dropped:
            candidates = drop_visual(candidates, self.drop_env, self.angle_dim)  # [B, K, F]
        _, logits = self.candidate_att_layer(self.drop(h_tilde), candidates, candidate_mask)  # [B, K]
        return h_1, c_1, logits, h_tilde


class Critic(nn.Module):
    """A2C value of the decoder's hidden state h [B, H] -> [B]."""

    def __init__(self, cfg: FollowerConfig) -> None:
        super().__init__()
        self.state2value = nn.Sequential(nn.Linear(cfg.hidden, cfg.hidden), nn.ReLU(),
                                         nn.Dropout(cfg.dropout), nn.Linear(cfg.hidden, 1))

    def forward(self, state: torch.Tensor) -> torch.Tensor:
        return self.state2value(state).squeeze(-1)  # [B]


# --------------------------------------------------------------------------------------------- follower


@dataclass(frozen=True)
class FollowerState:
    """The recurrent state between steps: the previous h~ (EnvDrop's h1, also the LSTM's input h) and c."""

    h_tilde: torch.Tensor  # [B, H]
    c: torch.Tensor  # [B, H]


class Follower(nn.Module):
    """The EnvDrop navigation agent: `encode` an instruction once, then one `step` per action.

    Family "nav": Follower(cfg, *, vocab_size, feature_dim, padding_idx=0), feature_dim = D (visual).
    """

    def __init__(self, cfg: FollowerConfig, *, vocab_size: int, feature_dim: int,
                 padding_idx: int = 0) -> None:
        super().__init__()
        self.cfg = cfg
        self.feature_dim = feature_dim
        self.encoder = EncoderLSTM(cfg, vocab_size, padding_idx)
        self.decoder = AttnDecoderLSTM(cfg, feature_dim + cfg.angle_dim)
        self.critic = Critic(cfg)

    def encode(self, tokens: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, FollowerState]:
        """tokens [B, T], mask [B, T] (True = real token, real tokens first) -> ctx [B, T, H] and the
        initial state. The attention mask of later steps is `mask` itself."""
        ctx, h0, c0 = self.encoder(tokens, mask)  # [B, T, H], [B, H], [B, H]
        return ctx, FollowerState(h0, c0)

    def step(self, state: FollowerState, action: torch.Tensor, panorama: torch.Tensor,
             candidates: torch.Tensor, candidate_mask: torch.Tensor, ctx: torch.Tensor,
             ctx_mask: torch.Tensor,
             already_dropped: bool = False) -> tuple[torch.Tensor, FollowerState, torch.Tensor]:
        """One decision. action [B, A] (angle feature of the agent's heading), panorama [B, 36, F],
        candidates [B, K, F] with the STOP slot, candidate_mask [B, K] (True = valid), ctx [B, T, H],
        ctx_mask [B, T]. Returns logits [B, K] (-inf where invalid), the new state, and h [B, H] (the
        critic's input). `already_dropped`: the features carry an environmental-dropout mask already."""
        h_1, c_1, logits, h_tilde = self.decoder(action, panorama, candidates, candidate_mask, state.h_tilde,
                                                 state.c, ctx, ctx_mask, already_dropped)
        return logits, FollowerState(h_tilde, c_1), h_1

    forward = step

    def value(self, h: torch.Tensor) -> torch.Tensor:
        """The critic's value [B] of hidden states h [B, H]."""
        return self.critic(h)

    def env_drop_mask(self, batch_size: int, *, shared: bool = False,
                      device: torch.device | None = None) -> torch.Tensor:
        """Environmental-dropout channel masks [B, D] (0 or 1/(1-p); all ones in eval mode): one per
        episode, or with `shared` one for the whole batch as EnvDrop's code draws it."""
        rows = 1 if shared else batch_size
        ones = torch.ones(rows, self.feature_dim, device=device)  # [rows, D]
        return self.decoder.drop_env(ones).expand(batch_size, -1)  # [B, D]


# ---------------------------------------------------------------------------------------------- speaker


class SpeakerEncoder(nn.Module):
    """Path encoder: chosen-candidate features [B, L, F] and panoramas [B, L, 36, F] -> ctx [B, L, H]."""

    def __init__(self, cfg: SpeakerConfig, feature_size: int) -> None:
        super().__init__()
        self.angle_dim = cfg.angle_dim
        dirs = 2 if cfg.bidirectional else 1
        self.lstm = nn.LSTM(feature_size, cfg.hidden // dirs, batch_first=True,
                            bidirectional=cfg.bidirectional)
        self.drop = nn.Dropout(cfg.dropout)
        self.drop3 = nn.Dropout(cfg.feat_dropout)
        self.attention_layer = SoftDotAttention(cfg.hidden, feature_size)
        self.post_lstm = nn.LSTM(cfg.hidden, cfg.hidden // dirs, batch_first=True,
                                 bidirectional=cfg.bidirectional)

    def forward(self, actions: torch.Tensor, panoramas: torch.Tensor, mask: torch.Tensor,
                already_dropped: bool = False) -> torch.Tensor:
        if not already_dropped:
            actions = drop_visual(actions, self.drop3, self.angle_dim)  # [B, L, F]
            panoramas = drop_visual(panoramas, self.drop3, self.angle_dim)  # [B, L, 36, F]
        ctx, _, _ = _run_lstm(self.lstm, actions, mask)  # [B, L, H]
        ctx = self.drop(ctx)
        b, length, views, width = panoramas.shape
        x, _ = self.attention_layer(ctx.reshape(b * length, -1), panoramas.reshape(b * length, views, width))
        x = self.drop(x.view(b, length, -1))  # [B, L, H]
        x, _, _ = _run_lstm(self.post_lstm, x, mask)  # [B, L, H]
        return self.drop(x)


class SpeakerDecoder(nn.Module):
    """Instruction decoder: words [B, T] with (h, c) [1, B, H] over ctx [B, L, H] -> logits [B, T, V]."""

    def __init__(self, cfg: SpeakerConfig, vocab_size: int, padding_idx: int) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, cfg.word_dim, padding_idx)
        self.lstm = nn.LSTM(cfg.word_dim, cfg.hidden, batch_first=True)
        self.drop = nn.Dropout(cfg.dropout)
        self.attention_layer = SoftDotAttention(cfg.hidden, cfg.hidden)
        self.projection = nn.Linear(cfg.hidden, vocab_size)
        # unused by EnvDrop's speaker too; kept so its checkpoints load name for name (strict)
        self.baseline_projection = nn.Sequential(nn.Linear(cfg.hidden, 128), nn.ReLU(),
                                                 nn.Dropout(cfg.dropout), nn.Linear(128, 1))

    def forward(self, words: torch.Tensor, ctx: torch.Tensor, ctx_mask: torch.Tensor, h0: torch.Tensor,
                c0: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x, (h1, c1) = self.lstm(self.drop(self.embedding(words)), (h0, c0))  # [B, T, H]
        b, t, hidden = x.shape
        x, _ = self.attention_layer(
            self.drop(x).reshape(b * t, hidden),
            ctx.unsqueeze(1).expand(-1, t, -1, -1).reshape(b * t, ctx.shape[1], hidden),  # [B*T, L, H]
            ctx_mask.unsqueeze(1).expand(-1, t, -1).reshape(b * t, -1),  # [B*T, L]
        )  # [B*T, H]
        return self.projection(self.drop(x.view(b, t, hidden))), h1, c1  # [B, T, V]


@dataclass(frozen=True)
class SpeakerContext:
    """A batch of paths to describe (as the speaker's encoder takes them)."""

    actions: torch.Tensor  # [B, L, F] feature of the candidate taken at each step (zeros at the STOP step)
    panoramas: torch.Tensor  # [B, L, 36, F] panorama at each step
    mask: torch.Tensor  # [B, L] bool, True on the path's steps (real steps first)
    already_dropped: bool = False  # the features carry an environmental-dropout mask already


@dataclass(frozen=True)
class SpeakerState:
    """Decoding state: LSTM (h, c) [1, M, H] and the encoded path repeated per row."""

    h: torch.Tensor  # [1, M, H]
    c: torch.Tensor  # [1, M, H]
    ctx: torch.Tensor  # [M, L, H]
    ctx_mask: torch.Tensor  # [M, L]


class Speaker(nn.Module):
    """The EnvDrop speaker; teacher-forced `forward`, and clipvil.nn.decoding's IncrementalDecoder.

    Family "nav": Speaker(cfg, *, vocab_size, feature_dim, padding_idx=0), feature_dim = D (visual).
    """

    def __init__(self, cfg: SpeakerConfig, *, vocab_size: int, feature_dim: int,
                 padding_idx: int = 0) -> None:
        super().__init__()
        self.cfg = cfg
        self.encoder = SpeakerEncoder(cfg, feature_dim + cfg.angle_dim)
        self.decoder = SpeakerDecoder(cfg, vocab_size, padding_idx)

    def encode(self, context: SpeakerContext) -> torch.Tensor:
        """ctx [B, L, H] of the paths."""
        return self.encoder(context.actions, context.panoramas, context.mask, context.already_dropped)

    def _zeros(self, rows: int, like: torch.Tensor) -> torch.Tensor:
        return like.new_zeros(1, rows, self.cfg.hidden)  # [1, rows, H]

    def forward(self, context: SpeakerContext, tokens: torch.Tensor) -> torch.Tensor:
        """Teacher forcing: tokens [B, T] (starting with BOS) -> logits [B, T, V]; logits[:, t] predict
        tokens[:, t + 1] (the task's loss compares logits[:, :-1] with tokens[:, 1:], ignoring padding)."""
        ctx = self.encode(context)  # [B, L, H]
        h0 = self._zeros(tokens.shape[0], ctx)
        logits, _, _ = self.decoder(tokens, ctx, context.mask, h0, h0.clone())
        return logits

    def init_state(self, context: SpeakerContext, expand: int) -> SpeakerState:
        """Each path's state repeated `expand` times consecutively (rows b*expand .. b*expand+expand-1)."""
        ctx = self.encode(context).repeat_interleave(expand, dim=0)  # [M, L, H]
        h0 = self._zeros(ctx.shape[0], ctx)
        return SpeakerState(h0, h0.clone(), ctx, context.mask.repeat_interleave(expand, dim=0))

    def step(self, tokens: torch.Tensor, state: SpeakerState) -> tuple[torch.Tensor, SpeakerState]:
        """tokens [M] (last ids) -> log-probs [M, V] of the next token, new state."""
        logits, h, c = self.decoder(tokens.unsqueeze(1), state.ctx, state.ctx_mask, state.h, state.c)
        return torch.log_softmax(logits.squeeze(1), dim=-1), replace(state, h=h, c=c)  # [M, V]

    def reorder_state(self, state: SpeakerState, index: torch.Tensor) -> SpeakerState:
        """Row i of the new state is row index[i] of `state`."""
        return SpeakerState(state.h.index_select(1, index), state.c.index_select(1, index),
                            state.ctx.index_select(0, index), state.ctx_mask.index_select(0, index))


register_model("envdrop_follower", family="nav", config_cls=FollowerConfig, builder=Follower)
register_model("envdrop_speaker", family="nav", config_cls=SpeakerConfig, builder=Speaker)
