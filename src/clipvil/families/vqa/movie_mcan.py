"""MoVie+MCAN (Nguyen et al. 2020, the VQA 2020 challenge winner) over CLIP grid features.

CLIP-ViL's "MCAN" VQA numbers were produced with MMF's `movie_mcan` (CLIP-ViL-Direct/vqa/mmf_configs/mcan/
*.yaml select `model_config.movie_mcan` and the `triple_logit_bce` loss). This module follows MMF
(facebookresearch/mmf: mmf/models/movie_mcan.py, mmf/modules/{embeddings,attention,bottleneck,layers}.py,
mmf/configs/models/movie_mcan/defaults.yaml):

    question: Embedding(vocab, 300) → LSTM(300 → H) → L × SA (MCAN encoder)                q [B, T, H]
              attention pool with 2 glimpses (MLP H → H/2 → 2, masked softmax)    cond, q_vec [B, H] each
    MCAN branch: Linear(C → H) on each cell → L × SGA guided by q → attention pool (1 glimpse)  [B, H]
    MoVie branch: the grid as a map [B, C, h, w] → K modulated ResNet bottlenecks (1x1 → 3x3 → 1x1,
              frozen BN, + a question-modulated 1x1 conv of the block input, channel + spatial gates,
              residual; the first block projects C → M) → average pool → LayerNorm                  [B, M]
    fusion (three branches, each → 2H and LayerNorm'd):
              0: q_vec + MoVie + MCAN,  1: MoVie alone,  2: q_vec + MCAN
    classifier: one Linear(2H → A) per branch ("triple linear")

Sizes (MMF defaults): H = 1024, 8 heads, L = 6, FFN 4H, word embedding 300 (GloVe), K = 4 bottlenecks of
width M = 1024 (inner width M/4 = 256), dropout 0.1.

Training uses all three heads (`forward(..., all_heads=True)` → [B, 3, A], scored by
`clipvil.nn.losses.triple_logit_bce`); the prediction, at evaluation as in MMF, is head 0, the fused
branch — plain `forward` returns only that head and skips the other two.

Deviations from MMF, on purpose:
- padded grid cells are masked: out of the MCAN branch's attentions and pool, and in the MoVie branch
  they are zeroed before every spatial operation (the 3x3 conv, the 7x7 spatial gate) and left out of
  the average pools. A grid padded at the bottom/right therefore gives exactly the logits of the
  unpadded grid, and what padded cells hold never matters; but unlike MCAN and Pythia, which see a
  set of cells, the convolutions see the layout (masking a cell is not the same as removing it). MMF masks
  nothing on the image side: its CHW feature reader zero-pads every grid to
  32 x 32 (`max_features: 1024`) and those zero cells take part in attention and pooling. To reproduce
  that, pass the zero-padded 32 x 32 grid with every cell marked real.
- `movie_dim` is a setting (MMF hard-codes 1024 for the bottleneck output and 256 for the modulation
  width, which is `movie_dim // 4` here); the dead third LayerNorm of MMF's SGA (`ln_mha.2`, never
  called) is not built, so it has no parameter; the output is logits.
Weights of an MMF checkpoint load with `from_mmf_state_dict` (leaf names inside the blocks are MMF's).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from itertools import pairwise

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops.misc import FrozenBatchNorm2d

from clipvil.engine.models import register_model
from clipvil.nn.layers import AttentionPool, grid_inputs
from clipvil.nn.text import QuestionEncoder
from clipvil.types import GridFeatures


@dataclass(frozen=True)
class MovieMCANConfig:
    """Architecture of a MoVie+MCAN head (vocabulary, answer and grid sizes are constructor arguments)."""

    hidden: int = 1024  # H: width of the LSTM, every SA/SGA layer and the pooled vectors (hidden_dim)
    heads: int = 8  # attention heads per attention block (num_attn); must divide hidden
    layers: int = 6  # L: SA layers on the question and as many SGA layers on the grid (num_layers)
    word_dim: int = 300  # word embedding width (MMF: 300, GloVe-sized)
    dropout: float = 0.1  # on residual branches, FFN hiddens and the attention-pool MLPs (dropout)
    attn_dropout: float = 0.1  # on attention maps (MMF hard-codes 0.1 whatever `dropout` says)
    movie_layers: int = 4  # K: modulated bottlenecks in the MoVie branch (cbn_num_layers)
    movie_dim: int = 1024  # M: output width of each bottleneck; inner width M // 4 (MMF: fixed 1024)
    use_se: bool = True  # channel (squeeze-excitation, ratio 4) and spatial (7x7) gates in each bottleneck

    def __post_init__(self) -> None:
        if self.hidden % self.heads:
            raise ValueError(f"MovieMCANConfig: hidden {self.hidden} is not divisible by heads {self.heads}")
        if self.movie_dim % 4:
            raise ValueError(f"MovieMCANConfig: movie_dim {self.movie_dim} must be a multiple of 4")

    @classmethod
    def preset(cls, name: str) -> MovieMCANConfig:
        """A named preset: 'default' (MMF's movie_mcan, what CLIP-ViL ran) or 'tiny' (tests and demos)."""
        if name not in MOVIE_MCAN_PRESETS:
            raise ValueError(f"unknown MoVie+MCAN preset {name!r}; known: {sorted(MOVIE_MCAN_PRESETS)}")
        return MOVIE_MCAN_PRESETS[name]


MOVIE_MCAN_PRESETS: dict[str, MovieMCANConfig] = {
    "default": MovieMCANConfig(),
    "tiny": replace(
        MovieMCANConfig(), hidden=32, heads=4, layers=2, word_dim=16, movie_layers=2, movie_dim=32
    ),
}


class MultiHeadAttention(nn.Module):
    """Scaled dot-product attention, MMF's MovieMcanMultiHeadAttention: linears 0/1/2 = q/k/v, 3 = merge."""

    def __init__(self, dim: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.heads = heads
        self.dropout_p = dropout  # on the attention map, in training only
        self.linears = nn.ModuleList(nn.Linear(dim, dim) for _ in range(4))

    def forward(self, query: torch.Tensor, keys: torch.Tensor, key_mask: torch.Tensor) -> torch.Tensor:
        """query [B, Lq, D], keys (= values) [B, Lk, D], key_mask [B, Lk] (True = real) → [B, Lq, D]."""
        b, d = query.shape[0], query.shape[-1]
        q, k, v = (
            lin(x).view(b, -1, self.heads, d // self.heads).transpose(1, 2)  # [B, h, L, d/h]
            for lin, x in zip(self.linears[:3], (query, keys, keys))
        )
        p = self.dropout_p if self.training else 0.0
        out = F.scaled_dot_product_attention(
            q, k, v, attn_mask=key_mask[:, None, None, :], dropout_p=p
        )  # [B, h, Lq, d/h]
        return self.linears[3](out.transpose(1, 2).reshape(b, -1, d))  # [B, Lq, D]


def _feed_forward(cfg: MovieMCANConfig) -> nn.Sequential:
    """Linear(H → 4H) → ReLU → Dropout → Linear(4H → H) (MMF's `fcn`, indices 0 and 3 hold weights)."""
    h = cfg.hidden
    return nn.Sequential(nn.Linear(h, 4 * h), nn.ReLU(), nn.Dropout(cfg.dropout), nn.Linear(4 * h, h))


class SelfAttention(nn.Module):
    """MCAN's SA: x = LN(x + SelfAtt(x)); x = LN(x + FFN(x)) (torch LayerNorm, eps 1e-5, as MMF)."""

    def __init__(self, cfg: MovieMCANConfig) -> None:
        super().__init__()
        self.multi_head_attn = MultiHeadAttention(cfg.hidden, cfg.heads, cfg.attn_dropout)
        self.fcn = _feed_forward(cfg)
        self.dropout = nn.Dropout(cfg.dropout)
        self.ln_mha = nn.LayerNorm(cfg.hidden)
        self.ln_fcn = nn.LayerNorm(cfg.hidden)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """x [B, L, H], mask [B, L] (True = real) → [B, L, H]."""
        x = self.ln_mha(x + self.dropout(self.multi_head_attn(x, x, mask)))  # [B, L, H]
        return self.ln_fcn(x + self.dropout(self.fcn(x)))  # [B, L, H]


class SelfGuidedAttention(nn.Module):
    """MCAN's SGA: y = LN(y + SelfAtt(y)); y = LN(y + Att(y → x)); y = LN(y + FFN(y))."""

    def __init__(self, cfg: MovieMCANConfig) -> None:
        super().__init__()
        self.multi_head_attn = nn.ModuleList(
            MultiHeadAttention(cfg.hidden, cfg.heads, cfg.attn_dropout) for _ in range(2)
        )
        self.fcn = _feed_forward(cfg)
        self.dropout = nn.Dropout(cfg.dropout)
        self.ln_mha = nn.ModuleList(nn.LayerNorm(cfg.hidden) for _ in range(2))
        self.ln_fcn = nn.LayerNorm(cfg.hidden)

    def forward(
        self, y: torch.Tensor, y_mask: torch.Tensor, x: torch.Tensor, x_mask: torch.Tensor
    ) -> torch.Tensor:
        """y (grid) [B, N, H], y_mask [B, N], x (question) [B, T, H], x_mask [B, T] → [B, N, H]."""
        y = self.ln_mha[0](y + self.dropout(self.multi_head_attn[0](y, y, y_mask)))  # [B, N, H]
        y = self.ln_mha[1](y + self.dropout(self.multi_head_attn[1](y, x, x_mask)))  # [B, N, H]
        return self.ln_fcn(y + self.dropout(self.fcn(y)))  # [B, N, H]


def _masked_mean(x: torch.Tensor, cells: torch.Tensor) -> torch.Tensor:
    """Mean of x [B, C, h, w] over the real cells (cells [B, 1, h, w] bool) → [B, C, 1, 1]."""
    total = x.masked_fill(~cells, 0.0).sum(dim=(2, 3), keepdim=True)  # [B, C, 1, 1]
    return total / cells.sum(dim=(2, 3), keepdim=True).to(x.dtype)  # [B, C, 1, 1]


class Modulation(nn.Module):
    """MoVie's modulated 1x1 conv: Conv1x1(x * Linear(cond)), the question scaling every input channel."""

    def __init__(self, channels: int, cond_dim: int, out_channels: int) -> None:
        super().__init__()
        self.linear = nn.Linear(cond_dim, channels)
        self.conv = nn.Conv2d(channels, out_channels, kernel_size=1)

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """x [B, C, h, w], cond [B, D] → [B, out, h, w]."""
        return self.conv(x * self.linear(cond)[:, :, None, None])  # [B, out, h, w]


class ChannelSpatialGate(nn.Module):
    """MMF's SEModule: x * sigmoid(SE(mean of x)), then x * sigmoid(Conv7x7(channel mean of x))."""

    def __init__(self, channels: int, reduction: int = 4) -> None:
        super().__init__()
        self.squeeze = nn.Conv2d(channels, channels // reduction, kernel_size=1, bias=False)
        self.excite = nn.Conv2d(channels // reduction, channels, kernel_size=1, bias=False)
        self.spatial = nn.Conv2d(1, 1, kernel_size=7, padding=3, bias=False)

    def forward(self, x: torch.Tensor, cells: torch.Tensor) -> torch.Tensor:
        """x [B, C, h, w], cells [B, 1, h, w] (True = real) → [B, C, h, w]."""
        gate = torch.sigmoid(self.excite(torch.relu(self.squeeze(_masked_mean(x, cells)))))  # [B, C, 1, 1]
        x = x * gate  # [B, C, h, w]
        where = x.mean(dim=1, keepdim=True).masked_fill(~cells, 0.0)  # [B, 1, h, w]
        return x * torch.sigmoid(self.spatial(where))  # [B, C, h, w]


class ModulatedBottleneck(nn.Module):
    """ResNet bottleneck, frozen BN; MoVie adds a question-modulated 1x1 conv to its first 1x1 conv."""

    def __init__(self, in_ch: int, out_ch: int, cond_dim: int, use_se: bool) -> None:
        super().__init__()
        width = out_ch // 4
        self.conv1 = nn.Conv2d(in_ch, width, kernel_size=1, bias=False)
        self.bn1 = FrozenBatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, kernel_size=3, padding=1, bias=False)
        self.bn2 = FrozenBatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, out_ch, kernel_size=1, bias=False)
        self.bn3 = FrozenBatchNorm2d(out_ch)
        self.downsample = nn.Conv2d(in_ch, out_ch, kernel_size=1, bias=False) if in_ch != out_ch else None
        self.cond = Modulation(in_ch, cond_dim, width)
        self.se = ChannelSpatialGate(out_ch) if use_se else None

    def forward(self, x: torch.Tensor, cond: torch.Tensor, cells: torch.Tensor) -> torch.Tensor:
        """x [B, C, h, w], cond [B, D], cells [B, 1, h, w] → [B, out, h, w] (padded cells: don't-care)."""
        out = torch.relu(self.bn1(self.conv1(x) + self.cond(x, cond)))  # [B, W, h, w]
        out = torch.relu(self.bn2(self.conv2(out.masked_fill(~cells, 0.0))))  # [B, W, h, w]
        out = self.bn3(self.conv3(out))  # [B, out, h, w]
        if self.se is not None:
            out = self.se(out, cells)  # [B, out, h, w]
        shortcut = x if self.downsample is None else self.downsample(x)  # [B, out, h, w]
        return torch.relu(out + shortcut)  # [B, out, h, w]


class MoVieBranch(nn.Module):
    """MMF's CBNEmbedding: K modulated bottlenecks over the grid map, masked average pool, LayerNorm."""

    def __init__(self, grid_dim: int, cfg: MovieMCANConfig) -> None:
        super().__init__()
        dims = [grid_dim] + [cfg.movie_dim] * cfg.movie_layers
        self.cbns = nn.ModuleList(
            ModulatedBottleneck(i, o, cfg.hidden, cfg.use_se) for i, o in pairwise(dims)
        )
        self.layer_norm = nn.LayerNorm(cfg.movie_dim)

    def forward(self, fmap: torch.Tensor, cells: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """fmap [B, C, h, w] (padded cells zero), cells [B, 1, h, w], cond [B, H] → [B, M]."""
        for block in self.cbns:
            fmap = block(fmap, cond, cells)  # [B, M, h, w]
        return self.layer_norm(_masked_mean(fmap, cells).flatten(1))  # [B, M]


class BranchCombine(nn.Module):
    """MMF's BranchCombineLayer: three fused vectors of width 2H, each LayerNorm'd."""

    def __init__(self, hidden: int, movie_dim: int) -> None:
        super().__init__()
        out = 2 * hidden
        self.linear_cga = nn.ModuleList(nn.Linear(hidden, out) for _ in range(2))
        self.linear_cbn = nn.ModuleList(nn.Linear(movie_dim, out) for _ in range(2))
        self.linear_ques = nn.ModuleList(nn.Linear(hidden, out) for _ in range(2))
        self.layer_norm = nn.ModuleList(nn.LayerNorm(out) for _ in range(3))

    def forward(
        self, v_mcan: torch.Tensor, v_movie: torch.Tensor, q: torch.Tensor, all_heads: bool
    ) -> torch.Tensor:
        """v_mcan [B, H], v_movie [B, M], q [B, H] → [B, 2H] (branch 0) or [B, 3, 2H] (all branches)."""
        fused = self.layer_norm[0](
            self.linear_ques[0](q) + self.linear_cbn[0](v_movie) + self.linear_cga[0](v_mcan)
        )  # [B, 2H]
        if not all_heads:
            return fused
        movie = self.layer_norm[1](self.linear_cbn[1](v_movie))  # [B, 2H]
        mcan = self.layer_norm[2](self.linear_ques[1](q) + self.linear_cga[1](v_mcan))  # [B, 2H]
        return torch.stack([fused, movie, mcan], dim=1)  # [B, 3, 2H]


class MovieMCAN(nn.Module):
    """MoVie+MCAN VQA head: (GridFeatures, question token ids) → answer logits [B, n_answers].

    grid_dim is the channel width C of the grid features (2048 for CLIP RN50, 2560 RN50x4, 768 ViT-B ...).
    The question embedding (`question.embedding`, word_dim wide) takes GloVe rows via
    `question.load_word_vectors`, as for MCAN and Pythia.
    """

    def __init__(self, cfg: MovieMCANConfig, *, grid_dim: int, vocab_size: int, n_answers: int) -> None:
        super().__init__()
        self.cfg = cfg
        self.question = QuestionEncoder(vocab_size, cfg.word_dim, cfg.hidden, rnn="lstm")
        self.text_layers = nn.ModuleList(SelfAttention(cfg) for _ in range(cfg.layers))
        self.text_pool = AttentionPool(cfg.hidden, cfg.hidden // 2, 2, cfg.dropout)  # glimpse 0: cond, 1: q
        self.grid_proj = nn.Linear(grid_dim, cfg.hidden)
        self.grid_layers = nn.ModuleList(SelfGuidedAttention(cfg) for _ in range(cfg.layers))
        self.grid_pool = AttentionPool(cfg.hidden, cfg.hidden // 2, 1, cfg.dropout)
        self.movie = MoVieBranch(grid_dim, cfg)
        self.combine = BranchCombine(cfg.hidden, cfg.movie_dim)
        self.classifier = nn.ModuleList(nn.Linear(2 * cfg.hidden, n_answers) for _ in range(3))

    def forward(self, grid: GridFeatures, tokens: torch.Tensor, all_heads: bool = False) -> torch.Tensor:
        """grid: feats [B, N, C], mask [B, N]; tokens [B, T] (0 = trailing padding).

        Returns logits [B, A] of the fused head (MMF's prediction), or with all_heads=True [B, 3, A]:
        heads 0 fused (question + MoVie + MCAN), 1 MoVie alone, 2 question + MCAN (for triple_logit_bce).
        """
        b, h = tokens.shape[0], self.cfg.hidden
        q, q_mask = self.question(tokens)  # [B, T, H], [B, T]
        feats, v_mask = grid_inputs(grid, b)  # [B, N, C] (padded cells zero), [B, N]
        feats = feats.to(self.grid_proj.weight.dtype)  # fp16 caches are upcast
        for layer in self.text_layers:
            q = layer(q, q_mask)  # [B, T, H]
        cond, q_vec = self.text_pool(q, q_mask).view(b, 2, h).unbind(dim=1)  # [B, H], [B, H]
        v = self.grid_proj(feats)  # [B, N, H]
        for layer in self.grid_layers:
            v = layer(v, v_mask, q, q_mask)  # [B, N, H]
        v_mcan = self.grid_pool(v, v_mask)  # [B, H]
        fmap = feats.transpose(1, 2).reshape(b, -1, *grid.hw)  # [B, C, h, w]
        v_movie = self.movie(fmap, v_mask.view(b, 1, *grid.hw), cond)  # [B, M]
        joint = self.combine(v_mcan, v_movie, q_vec, all_heads)  # [B, 2H] or [B, 3, 2H]
        if not all_heads:
            return self.classifier[0](joint)  # [B, A]
        return torch.stack([head(joint[:, i]) for i, head in enumerate(self.classifier)], dim=1)  # [B, 3, A]


# MMF movie_mcan state-dict prefixes → ours (first match wins); inside the blocks the names are MMF's.
_MMF_PREFIXES: tuple[tuple[str, str], ...] = (
    ("word_embedding.", "question.embedding."),
    ("text_embeddings.module.lstm.", "question.rnn."),
    ("text_embeddings.module.self_attns.", "text_layers."),
    ("text_embeddings.module.attn_pool.linear.0.", "text_pool.fc."),
    ("text_embeddings.module.attn_pool.linear.3.", "text_pool.score."),
    ("image_feature_embeddings_list.sga.linear.", "grid_proj."),
    ("image_feature_embeddings_list.sga.self_guided_attns.", "grid_layers."),
    ("image_feature_embeddings_list.sga_pool.linear.0.", "grid_pool.fc."),
    ("image_feature_embeddings_list.sga_pool.linear.3.", "grid_pool.score."),
    ("image_feature_embeddings_list.cbn.cbns.", "movie.cbns."),
    ("image_feature_embeddings_list.cbn.layer_norm.", "movie.layer_norm."),
    ("image_text_multi_modal_combine_layer.", "combine."),
    ("classifier.module.linears.", "classifier."),
)
_MMF_INFIXES = ((".se.se.1.", ".se.squeeze."), (".se.se.3.", ".se.excite."), (".se.attn.1.", ".se.spatial."))
_MMF_UNUSED = re.compile(r"^image_feature_embeddings_list\.sga\.self_guided_attns\.\d+\.ln_mha\.2\.")


def from_mmf_state_dict(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """An MMF `movie_mcan` state dict renamed to this module's names (load it with `load_state_dict`).

    Drops the never-used third SGA LayerNorm; raises KeyError naming the first key it cannot place."""
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if _MMF_UNUSED.match(key) or key.endswith("num_batches_tracked"):
            continue
        prefix = next((p for p in _MMF_PREFIXES if key.startswith(p[0])), None)
        if prefix is None:
            raise KeyError(f"MMF movie_mcan state dict: no place for key {key!r}")
        name = prefix[1] + key[len(prefix[0]) :]
        for theirs, ours in _MMF_INFIXES:
            name = name.replace(theirs, ours)
        out[name] = value
    return out


register_model("movie_mcan", family="vqa", config_cls=MovieMCANConfig, builder=MovieMCAN)
