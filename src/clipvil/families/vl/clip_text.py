"""CLIP-ViL+: the single-stream model with CLIP's own text transformer as the joint encoder instead of BERT.

Design (the smallest change that keeps every CLIP text weight as it was trained):

    text:    CLIP token_embedding(ids) + positional_embedding[:T]                                  [B, T, W]
             (the table gets two new rows, [MASK] = V and [PAD] = V + 1: CLIP's BPE has neither)
    visual:  the same `VisualEmbedding` as the BERT model (row/col embeddings, sampling, Linear + LayerNorm
             to W) + a learned modality vector (zeros at init: CLIP has no token types)                 [B, K, W]
    joint:   CLIP's residual attention blocks over [text ; visual], then ln_final                     [B, T+K, W]
             attention is *bidirectional* with padded text / padded or unsampled cells masked as keys
             (CLIP's text tower was trained causally; a causal mask would hide the image from the text)
    pooled:  Pooler(dense) on the state of <start_of_text> (the [CLS] slot), as the BERT model

Mapping CLIP's pre-LN blocks onto BERT's post-LN layers is not possible weight for weight, so the blocks are
used as they are (open_clip's `Transformer` module). The heads (MLM tied to the new token table, ITM, QA)
are `VLModel`'s own: `build_clip_text_vl_model` builds a `VLModel` and swaps its transformer for this one.
"""

from __future__ import annotations

import copy

import torch
from torch import nn
from transformers import BertConfig

from clipvil.families.vl.transformer import Pooler, VLConfig, VLModel, VLOutput
from clipvil.families.vl.visual import VisualEmbedding
from clipvil.types import GridFeatures

CLIP_LN_EPS = 1e-5  # open_clip's LayerNorm epsilon


def _text_parts(clip: nn.Module) -> tuple[nn.Embedding, torch.Tensor, nn.Module, nn.Module]:
    """(token_embedding, positional_embedding, transformer, ln_final) of an open_clip CLIP (or TextTransformer)."""
    parts = [getattr(clip, n, None) for n in ("token_embedding", "positional_embedding", "transformer", "ln_final")]
    if any(p is None for p in parts) or not isinstance(parts[0], nn.Embedding):
        raise TypeError(f"{type(clip).__name__} is not an open_clip CLIP with a text tower "
                        "(token_embedding, positional_embedding, transformer, ln_final)")
    return parts[0], parts[1], parts[2], parts[3]  # type: ignore[return-value]


def clip_text_shape(clip: nn.Module, extra_tokens: int = 2, dropout: float = 0.1) -> BertConfig:
    """A BertConfig describing the CLIP text tower's widths (what the heads and `VisualEmbedding` read)."""
    tokens, pos, transformer, _ = _text_parts(clip)
    width = tokens.embedding_dim
    heads = int(transformer.resblocks[0].attn.num_heads)
    return BertConfig(vocab_size=tokens.num_embeddings + extra_tokens, hidden_size=width, num_hidden_layers=1,
                      num_attention_heads=heads, intermediate_size=4 * width, hidden_act="gelu",
                      layer_norm_eps=CLIP_LN_EPS, hidden_dropout_prob=dropout, attention_probs_dropout_prob=0.0,
                      max_position_embeddings=int(pos.shape[0]), type_vocab_size=2)


class ClipTextVLTransformer(nn.Module):
    """(GridFeatures, token ids) → VLOutput with CLIP's text blocks over [text ; visual tokens]."""

    def __init__(self, cfg: VLConfig, clip: nn.Module, shape: BertConfig, *, grid_dim: int) -> None:
        super().__init__()
        tokens, pos, transformer, ln_final = _text_parts(clip)
        self.cfg = cfg
        self.token_embedding = nn.Embedding(shape.vocab_size, tokens.embedding_dim)
        with torch.no_grad():
            nn.init.normal_(self.token_embedding.weight, std=0.02)  # the new rows ([MASK], [PAD])
            self.token_embedding.weight[: tokens.num_embeddings] = tokens.weight  # CLIP's rows
        self.positional_embedding = nn.Parameter(pos.detach().clone())  # [ctx, W]
        self.transformer = copy.deepcopy(transformer)  # open_clip Transformer (batch first)
        if cfg.layers:
            blocks = self.transformer.resblocks
            if cfg.layers > len(blocks):
                raise ValueError(f"VLConfig.layers {cfg.layers} > the {len(blocks)} blocks of the CLIP text tower")
            self.transformer.resblocks = nn.ModuleList(list(blocks)[: cfg.layers])
        self.ln_final = copy.deepcopy(ln_final)
        self.heads = shape.num_attention_heads
        self.visual_embed = VisualEmbedding(grid_dim, shape, cfg.max_rows, cfg.max_cols)
        self.modality_embedding = nn.Parameter(torch.zeros(shape.hidden_size))  # [W]
        self.pooler = Pooler(shape.hidden_size, cfg.pooler_tanh)

    @property
    def hidden(self) -> int:
        return int(self.token_embedding.embedding_dim)

    @property
    def word_embeddings(self) -> nn.Embedding:
        """The token table (the MLM decoder is tied to it)."""
        return self.token_embedding

    def embed_text(self, input_ids: torch.Tensor) -> torch.Tensor:
        """[B, T] → [B, T, W]: token + absolute position embeddings (no dropout, as CLIP)."""
        t = input_ids.shape[1]
        if t > self.positional_embedding.shape[0]:
            raise ValueError(f"{t} text tokens exceed CLIP's context of {self.positional_embedding.shape[0]}")
        return self.token_embedding(input_ids) + self.positional_embedding[:t]  # [B, T, W]

    def modality(self) -> torch.Tensor | None:
        """The learned vector added to visual tokens [W], or None (cfg.modality_embedding False)."""
        return self.modality_embedding if self.cfg.modality_embedding else None

    def joint(
        self, text: torch.Tensor, attention_mask: torch.Tensor, visual: torch.Tensor, valid: torch.Tensor,
        index: torch.Tensor,
    ) -> VLOutput:
        """CLIP's blocks over [text ; visual] (bidirectional; masked keys: padded text, invalid cells)."""
        joint = torch.cat([text, visual.to(text.dtype)], dim=1)  # [B, L, W], L = T+K
        keys = torch.cat([attention_mask.bool(), valid], dim=1)  # [B, L]
        b, length = keys.shape
        bias = torch.zeros(b, 1, length, dtype=joint.dtype, device=joint.device)  # [B, 1, L]
        bias = bias.masked_fill(~keys[:, None, :], float("-inf"))  # [B, 1, L]
        bias = bias.expand(b, length, length).repeat_interleave(self.heads, dim=0)  # [B*heads, L, L]
        states = self.ln_final(self.transformer(joint, attn_mask=bias))  # [B, L, W]
        t = text.shape[1]
        return VLOutput(states[:, :t], states[:, t:], valid, index, self.pooler(states))

    def forward(
        self, grid: GridFeatures, input_ids: torch.Tensor, attention_mask: torch.Tensor,
        n_visual: int | None = None, generator: torch.Generator | None = None,
    ) -> VLOutput:
        """As `VLTransformer.forward`: grid [B, N, C], input_ids [B, T] (<start_of_text> first)."""
        text = self.embed_text(input_ids)  # [B, T, W]
        visual, valid, index = self.visual_embed(grid, self.modality(), n_visual, generator)  # [B, K, W] ...
        return self.joint(text, attention_mask, visual, valid, index)


def build_clip_text_vl_model(
    cfg: VLConfig, clip: nn.Module, visual: nn.Module, *, n_answers: int = 0, pretrain_heads: bool = True,
    extra_tokens: int = 2, dropout: float = 0.1,
) -> VLModel:
    """A `VLModel` whose transformer is `ClipTextVLTransformer` over `clip`'s text tower (weights copied;
    `clip` is left untouched). The heads are BERT-style initialised; the MLM decoder is tied to the new token
    table; `visual` keeps its weights."""
    shape = clip_text_shape(clip, extra_tokens, dropout)
    model = VLModel(cfg, shape, visual, n_answers=n_answers, pretrain_heads=pretrain_heads)  # a 1-layer BERT
    # placeholder is built, then replaced below
    init = model.transformer.bert._init_weights  # the placeholder BERT's init, for the new layers
    transformer = ClipTextVLTransformer(cfg, clip, shape, grid_dim=int(visual.dim))
    for module in (transformer.visual_embed, transformer.pooler):
        module.apply(init)
    model.transformer = transformer  # replaces the placeholder BERT (same attribute, same key prefix)
    if model.mlm is not None:
        model.mlm.decoder.weight = transformer.token_embedding.weight  # tied
    return model


__all__ = ["ClipTextVLTransformer", "build_clip_text_vl_model", "clip_text_shape"]
