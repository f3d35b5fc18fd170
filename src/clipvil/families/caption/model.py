"""Transformer captioner over CLIP grid features (CLIP-ViL's captioning model).

CLIP-ViL trains ruotianluo/self-critical.pytorch's `TransformerModel` (captioning/models/TransformerModel.py,
itself the Annotated Transformer) on CLIP grids; its structure and sizes are kept here:

    grid:    att_embed = Linear(C → d) → ReLU → Dropout(0.5)  on each cell         [B, N, d]
    encoder: N_enc pre-norm layers x + Drop(SelfAtt(LN(x))), x + Drop(FFN(LN(x))); final LN
    words:   Embedding(V, d) · sqrt(d) + sinusoidal positions, Dropout(0.1)          [B, L, d]
    decoder: N_dec pre-norm layers: causal self-attention, attention over the grid, FFN; final LN
    output:  generator.proj = Linear(d → V), untied from the word embedding; log-softmax

Paper preset: 6 + 6 layers, d 512, 8 heads, d_ff 2048, dropout 0.1 (configs/phrase1/clip_*_transformer_scl.yml);
the grid projection's dropout is `drop_prob_lm`, left at its default 0.5 there. Xavier-uniform init of every
matrix of the encoder, decoder, word embedding and output layer, as make_model does (att_embed keeps torch's).
Module names follow the reference (`att_embed.0`, `encoder.layers.i.self_attn.linears.j`, `feed_forward.w_1`,
`sublayer.j.norm`, `decoder.layers.i.src_attn`, `generator.proj`), so its checkpoints map key by key after
dropping the `model.` prefix, renaming `tgt_embed.0.lut` → `tgt_embed.lut` and LayerNorm `a_2/b_2` →
`weight/bias` (their vocabulary layout differs: 0 is bos/eos/pad there).

Deviations from the reference, on purpose:
- LayerNorm is torch's (biased variance, eps inside the square root) instead of theirs (unbiased std, eps
  outside), as in `clipvil.families.vqa.mcan`;
- padded grid cells come from `GridFeatures.mask` (zeroed, and masked in encoder self-attention and in the
  decoder's attention over the grid) instead of packed sequences;
- the decoder's self-attention is causal only: padding must trail, and a position never sees a later one,
  so trailing pads cannot reach a real position (the reference also masks eos/pad keys, which changes
  nothing for trailing padding);
- decoding caches each layer's keys/values (`IncrementalDecoder`); the reference re-runs the decoder over
  the whole prefix at every step. The decoder rows of one image attend to its memory as one query block
  (rows r = b*E .. b*E+E-1 read memory row b), so beams and samples never copy the grid memory.

Vocabulary ids follow `clipvil.data.tokenizers.CaptionVocab`: pad 0, bos 1, eos 2, unk 3. Inputs are
`[bos, w1, .., wn, pad..]`; the model itself only assumes that padding trails.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import nn

from clipvil.engine.models import register_model
from clipvil.nn.layers import grid_inputs
from clipvil.types import GridFeatures

KV = tuple[torch.Tensor, torch.Tensor]  # keys, values [rows, heads, length, head_dim]


@dataclass(frozen=True)
class CaptionerConfig:
    """Architecture of the Transformer captioner (grid width and vocabulary size are constructor arguments)."""

    d_model: int = 512  # width of every layer (d_model)
    heads: int = 8  # attention heads per attention block (num_att_heads); must divide d_model
    d_ff: int = 2048  # inner width of each feed-forward block (d_ff)
    enc_layers: int = 6  # encoder layers over the grid (N_enc)
    dec_layers: int = 6  # decoder layers over the words (N_dec)
    dropout: float = 0.1  # on attention maps, residual branches, FFN hiddens and word inputs (dropout)
    grid_dropout: float = 0.5  # after the grid projection's ReLU (drop_prob_lm, its default 0.5 as run)
    max_positions: int = 128  # longest decoder input the sinusoid table covers (reference: 5000)

    def __post_init__(self) -> None:
        if self.d_model % self.heads:
            raise ValueError(
                f"CaptionerConfig: d_model {self.d_model} is not divisible by heads {self.heads}"
            )
        if self.d_model % 2:
            raise ValueError(f"CaptionerConfig: d_model {self.d_model} must be even (sinusoid pairs)")

    @classmethod
    def preset(cls, name: str) -> CaptionerConfig:
        """A named preset: 'paper' (6+6 layers, d 512) or 'tiny' (tests and demos)."""
        if name not in CAPTIONER_PRESETS:
            raise ValueError(f"unknown captioner preset {name!r}; known: {sorted(CAPTIONER_PRESETS)}")
        return CAPTIONER_PRESETS[name]


CAPTIONER_PRESETS: dict[str, CaptionerConfig] = {
    "paper": CaptionerConfig(),
    "tiny": CaptionerConfig(d_model=32, heads=4, d_ff=64, enc_layers=2, dec_layers=2, max_positions=32),
}


@dataclass
class CaptionMemory:
    """The encoded grid: the decoding context of `TransformerCaptioner`."""

    memory: torch.Tensor  # [B, N, d] encoder output per cell
    mask: torch.Tensor  # [B, N] bool, True on real cells


@dataclass
class CaptionState:
    """Incremental decoding state: M = B' * group rows; row r reads memory row r // group."""

    self_kv: list[KV]  # per decoder layer: self-attention keys/values of the decoded positions [M, h, t, dh]
    cross_kv: list[KV]  # per decoder layer: keys/values of the memory cells [B', h, N, dh]
    mask: torch.Tensor  # [B', N] bool, real memory cells
    group: int  # decoding rows per memory row
    position: int  # tokens decoded so far (the next token's position)


class MultiHeadedAttention(nn.Module):
    """Scaled dot-product attention; linears[0..3] project queries, keys, values and the merged heads."""

    def __init__(self, d_model: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.heads = heads
        self.dropout_p = dropout  # on the attention map, in training only
        self.linears = nn.ModuleList(nn.Linear(d_model, d_model) for _ in range(4))

    def _split(self, x: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        return x.view(b, n, self.heads, d // self.heads).transpose(1, 2)  # [B, h, n, dh]

    def keys_values(self, x: torch.Tensor) -> KV:
        """Projected keys and values of x [B, N, d], each [B, h, N, dh]."""
        return self._split(self.linears[1](x)), self._split(self.linears[2](x))

    def attend(self, query: torch.Tensor, kv: KV, mask: torch.Tensor | None) -> torch.Tensor:
        """query [B, Lq, d] over keys/values [B, h, Lk, dh]; mask (True = attend) broadcasts to
        [B, h, Lq, Lk] → [B, Lq, d]."""
        q = self._split(self.linears[0](query))  # [B, h, Lq, dh]
        p = self.dropout_p if self.training else 0.0
        out = F.scaled_dot_product_attention(q, kv[0], kv[1], attn_mask=mask, dropout_p=p)  # [B, h, Lq, dh]
        return self.linears[3](out.transpose(1, 2).flatten(2))  # [B, Lq, d]


class PositionwiseFeedForward(nn.Module):
    """w_2(Dropout(ReLU(w_1(x))))."""

    def __init__(self, d_model: int, d_ff: int, dropout: float) -> None:
        super().__init__()
        self.w_1 = nn.Linear(d_model, d_ff)
        self.w_2 = nn.Linear(d_ff, d_model)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.w_2(self.dropout(torch.relu(self.w_1(x))))  # [B, L, d]


class SublayerConnection(nn.Module):
    """The pre-norm residual around a sublayer: x + Dropout(sublayer(LayerNorm(x))); holds norm and dropout."""

    def __init__(self, d_model: int, dropout: float) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(d_model, eps=1e-6)
        self.dropout = nn.Dropout(dropout)


class EncoderLayer(nn.Module):
    """x + Drop(SelfAtt(LN(x))), then x + Drop(FFN(LN(x)))."""

    def __init__(self, cfg: CaptionerConfig) -> None:
        super().__init__()
        self.self_attn = MultiHeadedAttention(cfg.d_model, cfg.heads, cfg.dropout)
        self.feed_forward = PositionwiseFeedForward(cfg.d_model, cfg.d_ff, cfg.dropout)
        self.sublayer = nn.ModuleList(SublayerConnection(cfg.d_model, cfg.dropout) for _ in range(2))

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """x [B, N, d], mask [B, 1, 1, N] (True = real cell) → [B, N, d]."""
        s0, s1 = self.sublayer
        h = s0.norm(x)  # [B, N, d]
        x = x + s0.dropout(self.self_attn.attend(h, self.self_attn.keys_values(h), mask))  # [B, N, d]
        return x + s1.dropout(self.feed_forward(s1.norm(x)))  # [B, N, d]


class DecoderLayer(nn.Module):
    """Causal self-attention, attention over the grid memory, FFN; each as a pre-norm residual."""

    def __init__(self, cfg: CaptionerConfig) -> None:
        super().__init__()
        self.self_attn = MultiHeadedAttention(cfg.d_model, cfg.heads, cfg.dropout)
        self.src_attn = MultiHeadedAttention(cfg.d_model, cfg.heads, cfg.dropout)
        self.feed_forward = PositionwiseFeedForward(cfg.d_model, cfg.d_ff, cfg.dropout)
        self.sublayer = nn.ModuleList(SublayerConnection(cfg.d_model, cfg.dropout) for _ in range(3))

    def forward(
        self, x: torch.Tensor, past: KV | None, cross: KV, src_mask: torch.Tensor
    ) -> tuple[torch.Tensor, KV]:
        """x [M, L, d]: positions P..P+L-1 of M rows, P = the length of `past` (cached self keys/values
        [M, h, P, dh], or None for P = 0); cross: memory keys/values [B', h, N, dh] with M = B' * E (row r
        reads memory row r // E); src_mask [B', N]. → (x [M, L, d], self keys/values [M, h, P+L, dh])."""
        s0, s1, s2 = self.sublayer
        m, length, d = x.shape
        h = s0.norm(x)  # [M, L, d]
        k, v = self.self_attn.keys_values(h)  # [M, h, L, dh] each
        if past is not None:
            k, v = torch.cat([past[0], k], dim=2), torch.cat([past[1], v], dim=2)  # [M, h, P+L, dh]
        start = k.shape[2] - length
        causal = None  # a single new position sees every cached one
        if length > 1:
            keys = torch.arange(k.shape[2], device=x.device)  # [P+L]
            causal = keys[None, :] <= start + torch.arange(length, device=x.device)[:, None]  # [L, P+L]
        x = x + s0.dropout(self.self_attn.attend(h, (k, v), causal))  # [M, L, d]
        rows = cross[0].shape[0]
        group = m // rows  # E decoding rows per memory row, stacked as one query block of E*L
        q = s1.norm(x).reshape(rows, group * length, d)  # [B', E*L, d]
        att = self.src_attn.attend(q, cross, src_mask[:, None, None, :])  # [B', E*L, d]
        x = x + s1.dropout(att.reshape(m, length, d))  # [M, L, d]
        return x + s2.dropout(self.feed_forward(s2.norm(x))), (k, v)  # [M, L, d]


class Stack(nn.Module):
    """`layers` followed by a final LayerNorm `norm` (the reference's Encoder / Decoder)."""

    def __init__(self, layers: list[nn.Module], d_model: int) -> None:
        super().__init__()
        self.layers = nn.ModuleList(layers)
        self.norm = nn.LayerNorm(d_model, eps=1e-6)


class WordEmbedding(nn.Module):
    """lut(tokens) * sqrt(d) + sinusoid(position), then dropout (Embeddings + PositionalEncoding)."""

    def __init__(self, vocab_size: int, d_model: int, max_positions: int, dropout: float) -> None:
        super().__init__()
        self.d_model = d_model
        self.lut = nn.Embedding(vocab_size, d_model)
        self.dropout = nn.Dropout(dropout)
        position = torch.arange(max_positions, dtype=torch.float64)[:, None]  # [P, 1]
        freq = torch.exp(torch.arange(0, d_model, 2, dtype=torch.float64) * (-math.log(10000.0) / d_model))
        pe = torch.zeros(max_positions, d_model, dtype=torch.float64)  # [P, d]
        pe[:, 0::2], pe[:, 1::2] = torch.sin(position * freq), torch.cos(position * freq)
        self.register_buffer("pe", pe.float(), persistent=False)

    def forward(self, tokens: torch.Tensor, offset: int = 0) -> torch.Tensor:
        """tokens [M, L] at positions offset..offset+L-1 → [M, L, d]."""
        end = offset + tokens.shape[1]
        if end > self.pe.shape[0]:
            raise ValueError(f"captioner: position {end - 1} is beyond max_positions {self.pe.shape[0]}")
        x = self.lut(tokens) * math.sqrt(self.d_model) + self.pe[offset:end]  # [M, L, d]
        return self.dropout(x)


class Generator(nn.Module):
    """Linear(d → V) then log-softmax."""

    def __init__(self, d_model: int, vocab_size: int) -> None:
        super().__init__()
        self.proj = nn.Linear(d_model, vocab_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.log_softmax(self.proj(x), dim=-1)  # [..., V]


class TransformerCaptioner(nn.Module):
    """Captioner: `forward(grid, tokens_in)` → next-token log-probs (teacher forcing); also an
    `IncrementalDecoder` over `encode(grid)` for `clipvil.nn.decoding`.

    grid_dim is the channel width C of the grid (2048 for CLIP RN50, 768 for ViT-B ...); vocab_size counts
    every id of the caption vocabulary (specials included).
    """

    def __init__(self, cfg: CaptionerConfig, *, grid_dim: int, vocab_size: int) -> None:
        super().__init__()
        self.cfg = cfg
        self.vocab_size = vocab_size
        self.att_embed = nn.Sequential(
            nn.Linear(grid_dim, cfg.d_model), nn.ReLU(), nn.Dropout(cfg.grid_dropout)
        )
        self.encoder = Stack([EncoderLayer(cfg) for _ in range(cfg.enc_layers)], cfg.d_model)
        self.decoder = Stack([DecoderLayer(cfg) for _ in range(cfg.dec_layers)], cfg.d_model)
        self.tgt_embed = WordEmbedding(vocab_size, cfg.d_model, cfg.max_positions, cfg.dropout)
        self.generator = Generator(cfg.d_model, vocab_size)
        for part in (self.encoder, self.decoder, self.tgt_embed, self.generator):
            for p in part.parameters():
                if p.dim() > 1:
                    nn.init.xavier_uniform_(p)

    def encode(self, grid: GridFeatures) -> CaptionMemory:
        """The grid through att_embed and the encoder; padded cells are zeroed and never attended to."""
        feats, mask = grid_inputs(grid, grid.batch_size)  # [B, N, C], [B, N]
        x = self.att_embed(feats.to(self.att_embed[0].weight.dtype))  # [B, N, d]
        for layer in self.encoder.layers:
            x = layer(x, mask[:, None, None, :])  # [B, N, d]
        return CaptionMemory(self.encoder.norm(x), mask)  # [B, N, d]

    def decode(self, context: CaptionMemory, tokens_in: torch.Tensor) -> torch.Tensor:
        """Teacher-forced log-probs [R, L, V] of tokens_in [R, L] (trailing pads) given memory of B images,
        R = B * E: rows b*E .. b*E+E-1 caption image b (e.g. 5 captions per image)."""
        rows, b = tokens_in.shape[0], context.memory.shape[0]
        if rows % b:
            raise ValueError(f"captioner: {rows} caption rows are not a multiple of {b} images")
        x = self.tgt_embed(tokens_in)  # [R, L, d]
        for layer in self.decoder.layers:
            x, _ = layer(x, None, layer.src_attn.keys_values(context.memory), context.mask)  # [R, L, d]
        return self.generator(self.decoder.norm(x))  # [R, L, V]

    def forward(self, grid: GridFeatures, tokens_in: torch.Tensor) -> torch.Tensor:
        """grid [B, N, C] (+ mask), tokens_in [B*E, L] starting with bos → log-probs [B*E, L, V]; position t
        predicts token t+1 and sees tokens 0..t only."""
        return self.decode(self.encode(grid), tokens_in)

    # IncrementalDecoder
    def init_state(self, context: CaptionMemory, expand: int) -> CaptionState:
        """Empty caches for B * expand rows; the memory keys/values are projected once, per image."""
        memory = context.memory  # [B, N, d]
        b, _, d = memory.shape
        dh = d // self.cfg.heads
        empty = memory.new_zeros(b * expand, self.cfg.heads, 0, dh)  # [M, h, 0, dh]
        cross = [layer.src_attn.keys_values(memory) for layer in self.decoder.layers]
        return CaptionState([(empty, empty)] * len(cross), cross, context.mask, expand, 0)

    def step(self, tokens: torch.Tensor, state: CaptionState) -> tuple[torch.Tensor, CaptionState]:
        """tokens [M] at position `state.position` → next-token log-probs [M, V] and the advanced state."""
        x = self.tgt_embed(tokens[:, None], offset=state.position)  # [M, 1, d]
        new_kv = []
        for layer, past, cross in zip(self.decoder.layers, state.self_kv, state.cross_kv):
            x, kv = layer(x, past, cross, state.mask)  # [M, 1, d]
            new_kv.append(kv)
        logp = self.generator(self.decoder.norm(x[:, 0]))  # [M, V]
        return logp, replace(state, self_kv=new_kv, position=state.position + 1)

    def reorder_state(self, state: CaptionState, index: torch.Tensor) -> CaptionState:
        """Rows `index` [M'] of the state. The memory is shared while every image keeps its `group` rows
        in order (beam search); otherwise it is gathered per row once (group becomes 1)."""
        self_kv = [(k.index_select(0, index), v.index_select(0, index)) for k, v in state.self_kv]
        source = index // state.group  # [M'] memory row of each kept row
        images = state.mask.shape[0]
        same = index.numel() == images * state.group and torch.equal(
            source, torch.arange(images, device=index.device).repeat_interleave(state.group)
        )
        if same:
            return replace(state, self_kv=self_kv)
        cross = [(k.index_select(0, source), v.index_select(0, source)) for k, v in state.cross_kv]
        return replace(
            state, self_kv=self_kv, cross_kv=cross, mask=state.mask.index_select(0, source), group=1
        )


# family "caption": builder(cfg, *, grid_dim, vocab_size); forward(GridFeatures, tokens_in [B*E, L]) -> [B*E, L, V]
register_model(
    "transformer_captioner", family="caption", config_cls=CaptionerConfig, builder=TransformerCaptioner
)
