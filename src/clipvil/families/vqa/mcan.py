"""MCAN: Deep Modular Co-Attention Networks (Yu et al., CVPR 2019) over CLIP grid features.

Structure and sizes follow the authors' code, MILVLG/mcan-vqa (core/model/net.py, mca.py, net_utils.py,
cfgs/base_cfgs.py, cfgs/{small,large}_model.yml):

    question: Embedding(vocab, 300) → LSTM(300 → H)                        [B, T, H]
    grid:     Linear(C → H) on each cell (their img_feat_linear)             [B, N, H]
    encoder:  L × SA on the question  (self-attention, FFN; post-norm residuals)
    decoder:  L × SGA on the grid     (self-attention, attention guided by the encoded question, FFN)
    pooling:  AttFlat on each side: MLP(H → 512 → G) scores, masked softmax, G weighted sums,
              Linear(G·H → F)
    fusion:   LayerNorm(q + v) → Linear(F → n_answers) = logits (the loss lives in the task)

Sizes: small H=512, FF=4H=2048, 8 heads, L=6, F=1024; large H=1024, FF=4096, 8 heads (cfgs/large_model.yml
keeps MULTI_HEAD at 8), F=2048; both G=1 glimpse, AttFlat MLP 512, dropout 0.1.

Deviations from mcan-vqa, on purpose:
- masks come from `GridFeatures.mask` and from token id 0, not from "feature row sums to zero" (a real
  cell of zeros stays real; padded cells are zeroed and masked, so any value there changes nothing);
- LayerNorm is torch's (biased variance, eps inside the square root) instead of their hand-written one
  (unbiased std, eps outside): the same function up to a factor sqrt(H/(H-1)) ≈ 1.001 on the scale;
- the output is logits; mcan-vqa applies a sigmoid inside the model and BCE outside.
- CLIP-ViL's own MCAN numbers came from MMF's `movie_mcan` (MoVie+MCAN, a different, larger model);
  this module is the original MCAN the brief asks for.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import nn

from clipvil.engine.models import register_model
from clipvil.nn.layers import AttentionPool, grid_inputs
from clipvil.nn.text import QuestionEncoder
from clipvil.types import GridFeatures


@dataclass(frozen=True)
class MCANConfig:
    """Architecture of an MCAN head (vocabulary, answer and grid sizes are constructor arguments)."""

    hidden: int = 512  # H: width of every co-attention layer (HIDDEN_SIZE)
    ff: int = 2048  # inner width of each feed-forward block (FF_SIZE = 4 * HIDDEN_SIZE)
    heads: int = 8  # attention heads per attention block (MULTI_HEAD); must divide hidden
    layers: int = 6  # L: SA layers on the question and, as many, SGA layers on the grid (LAYER)
    word_dim: int = 300  # word embedding width (WORD_EMBED_SIZE; GloVe-sized)
    flat_mlp: int = 512  # hidden width of the AttFlat scoring MLP (FLAT_MLP_SIZE)
    flat_glimpses: int = 1  # attention glimpses per AttFlat (FLAT_GLIMPSES)
    flat_out: int = 1024  # F: width of each pooled side and of the fused vector (FLAT_OUT_SIZE)
    dropout: float = 0.1  # dropout on attention maps, residual branches and MLP hiddens (DROPOUT_R)

    def __post_init__(self) -> None:
        if self.hidden % self.heads:
            raise ValueError(f"MCANConfig: hidden {self.hidden} is not divisible by heads {self.heads}")

    @classmethod
    def preset(cls, name: str) -> MCANConfig:
        """A named preset: 'small' or 'large' (mcan-vqa's cfgs/small_model.yml and large_model.yml)."""
        if name not in MCAN_PRESETS:
            raise ValueError(f"unknown MCAN preset {name!r}; known: {sorted(MCAN_PRESETS)}")
        return MCAN_PRESETS[name]


MCAN_PRESETS: dict[str, MCANConfig] = {
    "small": MCANConfig(),
    "large": replace(MCANConfig(), hidden=1024, ff=4096, flat_out=2048),
}


class MultiHeadAttention(nn.Module):
    """Scaled dot-product attention with `heads` heads; keys where `key_mask` is False get no weight."""

    def __init__(self, dim: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.heads = heads
        self.dropout_p = dropout  # on the attention map, in training only
        self.linear_q = nn.Linear(dim, dim)
        self.linear_k = nn.Linear(dim, dim)
        self.linear_v = nn.Linear(dim, dim)
        self.linear_merge = nn.Linear(dim, dim)

    def _split(self, x: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        return x.view(b, n, self.heads, d // self.heads).transpose(1, 2)  # [B, heads, n, d/heads]

    def forward(self, query: torch.Tensor, keys: torch.Tensor, key_mask: torch.Tensor) -> torch.Tensor:
        """query [B, Lq, D], keys (also the values) [B, Lk, D], key_mask [B, Lk] → [B, Lq, D]."""
        q = self._split(self.linear_q(query))  # [B, h, Lq, d]
        k = self._split(self.linear_k(keys))  # [B, h, Lk, d]
        v = self._split(self.linear_v(keys))  # [B, h, Lk, d]
        p = self.dropout_p if self.training else 0.0
        out = F.scaled_dot_product_attention(
            q, k, v, attn_mask=key_mask[:, None, None, :], dropout_p=p
        )  # [B, h, Lq, d]
        return self.linear_merge(out.transpose(1, 2).flatten(2))  # [B, Lq, D]


class FeedForward(nn.Module):
    """Linear(D → FF) → ReLU → Dropout → Linear(FF → D)."""

    def __init__(self, dim: int, ff: int, dropout: float) -> None:
        super().__init__()
        self.fc = nn.Linear(dim, ff)
        self.dropout = nn.Dropout(dropout)
        self.out = nn.Linear(ff, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.dropout(torch.relu(self.fc(x))))  # [B, L, D]


class SelfAttentionLayer(nn.Module):
    """SA: x = LN(x + SelfAtt(x)); x = LN(x + FFN(x))."""

    def __init__(self, cfg: MCANConfig) -> None:
        super().__init__()
        self.attn = MultiHeadAttention(cfg.hidden, cfg.heads, cfg.dropout)
        self.ffn = FeedForward(cfg.hidden, cfg.ff, cfg.dropout)
        self.dropout = nn.Dropout(cfg.dropout)
        self.norm1 = nn.LayerNorm(cfg.hidden, eps=1e-6)
        self.norm2 = nn.LayerNorm(cfg.hidden, eps=1e-6)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """x [B, L, H], mask [B, L] → [B, L, H]."""
        x = self.norm1(x + self.dropout(self.attn(x, x, mask)))  # [B, L, H]
        return self.norm2(x + self.dropout(self.ffn(x)))  # [B, L, H]


class GuidedAttentionLayer(nn.Module):
    """SGA: y = LN(y + SelfAtt(y)); y = LN(y + Att(y → x)); y = LN(y + FFN(y))."""

    def __init__(self, cfg: MCANConfig) -> None:
        super().__init__()
        self.self_attn = MultiHeadAttention(cfg.hidden, cfg.heads, cfg.dropout)
        self.guided_attn = MultiHeadAttention(cfg.hidden, cfg.heads, cfg.dropout)
        self.ffn = FeedForward(cfg.hidden, cfg.ff, cfg.dropout)
        self.dropout = nn.Dropout(cfg.dropout)
        self.norm1 = nn.LayerNorm(cfg.hidden, eps=1e-6)
        self.norm2 = nn.LayerNorm(cfg.hidden, eps=1e-6)
        self.norm3 = nn.LayerNorm(cfg.hidden, eps=1e-6)

    def forward(
        self, y: torch.Tensor, y_mask: torch.Tensor, x: torch.Tensor, x_mask: torch.Tensor
    ) -> torch.Tensor:
        """y (grid) [B, N, H], y_mask [B, N], x (question) [B, T, H], x_mask [B, T] → [B, N, H]."""
        y = self.norm1(y + self.dropout(self.self_attn(y, y, y_mask)))  # [B, N, H]
        y = self.norm2(y + self.dropout(self.guided_attn(y, x, x_mask)))  # [B, N, H]
        return self.norm3(y + self.dropout(self.ffn(y)))  # [B, N, H]


class AttFlat(nn.Module):
    """Attentional reduction of a sequence to one vector: AttentionPool, then Linear(G·H → F)."""

    def __init__(self, cfg: MCANConfig) -> None:
        super().__init__()
        self.pool = AttentionPool(cfg.hidden, cfg.flat_mlp, cfg.flat_glimpses, cfg.dropout)
        self.merge = nn.Linear(self.pool.out_dim, cfg.flat_out)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """x [B, L, H], mask [B, L] → [B, F]."""
        return self.merge(self.pool(x, mask))  # [B, F]


class MCAN(nn.Module):
    """MCAN VQA head: (GridFeatures, question token ids) → answer logits [B, n_answers].

    grid_dim is the channel width C of the grid features (2048 for CLIP RN50, 2560 RN50x4, 768 ViT-B ...).
    """

    def __init__(self, cfg: MCANConfig, *, grid_dim: int, vocab_size: int, n_answers: int) -> None:
        super().__init__()
        self.cfg = cfg
        self.question = QuestionEncoder(vocab_size, cfg.word_dim, cfg.hidden, rnn="lstm")
        self.grid_proj = nn.Linear(grid_dim, cfg.hidden)
        self.encoder = nn.ModuleList(SelfAttentionLayer(cfg) for _ in range(cfg.layers))
        self.decoder = nn.ModuleList(GuidedAttentionLayer(cfg) for _ in range(cfg.layers))
        self.question_flat = AttFlat(cfg)
        self.grid_flat = AttFlat(cfg)
        self.fusion_norm = nn.LayerNorm(cfg.flat_out, eps=1e-6)
        self.classifier = nn.Linear(cfg.flat_out, n_answers)

    @property
    def word_embedding(self) -> nn.Embedding:
        """The question word table (filled from GloVe by the task's `word_vectors`)."""
        return self.question.embedding

    def forward(self, grid: GridFeatures, tokens: torch.Tensor) -> torch.Tensor:
        """grid: feats [B, N, C], mask [B, N]; tokens [B, T] (0 = trailing padding) → logits [B, A]."""
        q, q_mask = self.question(tokens)  # [B, T, H], [B, T]
        feats, v_mask = grid_inputs(grid, tokens.shape[0])  # [B, N, C], [B, N]
        v = self.grid_proj(feats.to(self.grid_proj.weight.dtype))  # [B, N, H] (fp16 caches are upcast)
        for layer in self.encoder:
            q = layer(q, q_mask)  # [B, T, H]
        for layer in self.decoder:
            v = layer(v, v_mask, q, q_mask)  # [B, N, H]
        fused = self.question_flat(q, q_mask) + self.grid_flat(v, v_mask)  # [B, F]
        return self.classifier(self.fusion_norm(fused))  # [B, n_answers]


register_model("mcan", family="vqa", config_cls=MCANConfig, builder=MCAN)
