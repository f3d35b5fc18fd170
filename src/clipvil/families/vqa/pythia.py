"""Pythia (BUTD-style top-down attention VQA) over CLIP grid features.

The paper ran Pythia through MMF with identity image encoders on the grid features
(clip-vil/CLIP-ViL CLIP-ViL-Direct/vqa/mmf_configs/pythia/*.yaml). This module follows MMF's `pythia`
model and its default config (facebookresearch/mmf: mmf/models/pythia.py, mmf/configs/models/pythia/
defaults.yaml, mmf/modules/{embeddings,attention,layers}.py):

    question: Embedding(vocab, 300) → LSTM(300 → 1024) → self-attention with 2 glimpses
              (MLP 1024 → 512 → 2, softmax over tokens; MMF's kernel-1 convs)             q [B, 2048]
    attention: "non-linear element-wise multiply" — f(Wv·v_i) * f(Wq·q) → weight-normed
              Linear(5000 → 1) → softmax over cells → attended v = Σ a_i v_i               [B, C]
    fusion:   f(Wv·v) * f(Wq·q)                                                            [B, 5000]
    classifier: MMF's "logit" classifier, two branches summed:
              Linear(f(W·h) → A) with f: 5000 → 300 plus Linear(f(W'·h) → A) with f: 5000 → 5000

f is a weight-normed Linear + ReLU (MMF's ReLUWithWeightNormFC) or, with nonlinearity="gated_tanh",
the gated tanh of Anderson et al. / Teney et al. (tanh(Wx) * sigmoid(W'x), MMF's GatedTanh).

Question attention over padding: MMF pads every question to 14 tokens and its question attention's softmax
runs over all 14 positions, padding included (the LSTM's states there depend on the question, so the weights
it gives them change the logits — by up to 13 % on padded questions). `attend_padding=True` reproduces that
exactly (the paper recipes' setting: questions padded to `question_pad_to` whatever the batch padding, one
softmax over every position); `attend_padding=False` (the class default) masks the padding out.

Deviations from MMF, on purpose: padded grid cells are masked with a plain masked softmax (MMF softmaxes,
zeroes and renormalises, the same up to its 1e-8 epsilon); the output is logits.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn
from torch.nn.utils.parametrizations import weight_norm

from clipvil.engine.models import register_model
from clipvil.nn.layers import AttentionPool, grid_inputs, masked_softmax
from clipvil.nn.text import QuestionEncoder, RNNKind
from clipvil.types import GridFeatures

Nonlinearity = Literal["relu", "gated_tanh"]


@dataclass(frozen=True)
class PythiaConfig:
    """Architecture of a Pythia head (vocabulary, answer and grid sizes are constructor arguments)."""

    word_dim: int = 300  # word embedding width (GloVe-sized)
    rnn: RNNKind = "lstm"  # question recurrent unit
    question_hidden: int = 1024  # recurrent width (MMF text_embeddings hidden_dim)
    question_att_hidden: int = 512  # hidden width of the question attention MLP (MMF conv1_out)
    question_glimpses: int = 2  # question attention glimpses; question vector = glimpses * question_hidden
    hidden: int = 5000  # width of the element-wise products in the image attention and the fusion
    nonlinearity: Nonlinearity = "relu"  # f: weight-normed Linear + ReLU (MMF) or gated tanh (BUTD)
    classifier_text_hidden: int = 300  # width of the classifier's "text" branch (MMF text_hidden_dim)
    classifier_image_hidden: int = 5000  # width of the classifier's "image" branch (MMF img_hidden_dim)
    dropout: float = 0.0  # dropout on question states and on both element-wise products (MMF: 0)
    attend_padding: bool = False  # True: MMF-exact question attention over every padded position (recipes)
    question_pad_to: int = 14  # attend_padding: questions are padded to this many tokens (MMF max_length)

    def __post_init__(self) -> None:
        if self.nonlinearity not in _NONLINEAR:
            raise ValueError(
                f"PythiaConfig: unknown nonlinearity {self.nonlinearity!r}; known: {sorted(_NONLINEAR)}"
            )

    @classmethod
    def preset(cls, name: str) -> PythiaConfig:
        """A named preset: 'pythia' (MMF's defaults, what the paper ran) or 'butd' (see PYTHIA_PRESETS)."""
        if name not in PYTHIA_PRESETS:
            raise ValueError(f"unknown Pythia preset {name!r}; known: {sorted(PYTHIA_PRESETS)}")
        return PYTHIA_PRESETS[name]


class ReLUProjection(nn.Module):
    """Weight-normed Linear (one norm over the whole matrix) followed by ReLU."""

    def __init__(self, in_dim: int, out_dim: int) -> None:
        super().__init__()
        self.linear = weight_norm(nn.Linear(in_dim, out_dim), dim=None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.linear(x))  # [..., out_dim]


class GatedTanh(nn.Module):
    """tanh(W x + b) * sigmoid(W' x + b') (Anderson et al. 2018; Teney et al. 2018)."""

    def __init__(self, in_dim: int, out_dim: int) -> None:
        super().__init__()
        self.linear = nn.Linear(in_dim, out_dim)
        self.gate = nn.Linear(in_dim, out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.linear(x)) * torch.sigmoid(self.gate(x))  # [..., out_dim]


_NONLINEAR: dict[str, type[ReLUProjection | GatedTanh]] = {"relu": ReLUProjection, "gated_tanh": GatedTanh}

PYTHIA_PRESETS: dict[str, PythiaConfig] = {
    # MMF mmf/configs/models/pythia/defaults.yaml, as CLIP-ViL ran it.
    "pythia": PythiaConfig(),
    # Teney et al. 2018 sizes (GRU 512, joint 512, gated tanh); question pooling and the two-branch classifier
    # stay Pythia's, so this is a BUTD-sized Pythia, not a reproduction of their model.
    "butd": PythiaConfig(
        rnn="gru",
        question_hidden=512,
        question_glimpses=1,
        hidden=512,
        nonlinearity="gated_tanh",
        classifier_image_hidden=512,
    ),
}


class ElementwiseProduct(nn.Module):
    """MMF's "non-linear element-wise multiply": f(W_v v) * f(W_q q), then dropout."""

    def __init__(self, image_dim: int, question_dim: int, cfg: PythiaConfig) -> None:
        super().__init__()
        self.image_proj = _NONLINEAR[cfg.nonlinearity](image_dim, cfg.hidden)
        self.question_proj = _NONLINEAR[cfg.nonlinearity](question_dim, cfg.hidden)
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(self, v: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
        """v [B, N, C] or [B, C], q [B, Q] → [B, N, hidden] or [B, hidden]."""
        qp = self.question_proj(q)  # [B, hidden]
        if v.dim() == 3:
            qp = qp.unsqueeze(1)  # [B, 1, hidden]
        return self.dropout(self.image_proj(v) * qp)  # [B, (N,) hidden]


class TopDownAttention(nn.Module):
    """Question-guided softmax attention over grid cells; returns the attended feature [B, C]."""

    def __init__(self, image_dim: int, question_dim: int, cfg: PythiaConfig) -> None:
        super().__init__()
        self.combine = ElementwiseProduct(image_dim, question_dim, cfg)
        self.score = weight_norm(nn.Linear(cfg.hidden, 1), dim=None)

    def forward(self, v: torch.Tensor, v_mask: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
        """v [B, N, C] (padding zeroed), v_mask [B, N], q [B, Q] → [B, C]."""
        scores = self.score(self.combine(v, q)).squeeze(-1)  # [B, N]
        weights = masked_softmax(scores, v_mask, dim=1)  # [B, N]
        return torch.einsum("bn,bnc->bc", weights, v)  # [B, C]


class LogitClassifier(nn.Module):
    """MMF's two-branch "logit" classifier: Linear(f_text(h)) + Linear(f_image(h))."""

    def __init__(self, in_dim: int, n_answers: int, cfg: PythiaConfig) -> None:
        super().__init__()
        self.text_proj = _NONLINEAR[cfg.nonlinearity](in_dim, cfg.classifier_text_hidden)
        self.image_proj = _NONLINEAR[cfg.nonlinearity](in_dim, cfg.classifier_image_hidden)
        self.text_out = nn.Linear(cfg.classifier_text_hidden, n_answers)
        self.image_out = nn.Linear(cfg.classifier_image_hidden, n_answers)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        """h [B, in_dim] → logits [B, n_answers]."""
        return self.text_out(self.text_proj(h)) + self.image_out(self.image_proj(h))  # [B, A]


class Pythia(nn.Module):
    """Pythia VQA head: (GridFeatures, question token ids) → answer logits [B, n_answers].

    grid_dim is the channel width C of the grid features (2048 for CLIP RN50, 2560 RN50x4, 768 ViT-B ...).
    """

    def __init__(self, cfg: PythiaConfig, *, grid_dim: int, vocab_size: int, n_answers: int) -> None:
        super().__init__()
        self.cfg = cfg
        self.question = QuestionEncoder(vocab_size, cfg.word_dim, cfg.question_hidden, rnn=cfg.rnn)
        self.question_dropout = nn.Dropout(cfg.dropout)
        self.question_att = AttentionPool(
            cfg.question_hidden, cfg.question_att_hidden, cfg.question_glimpses, 0.0
        )
        q_dim = self.question_att.out_dim
        self.image_att = TopDownAttention(grid_dim, q_dim, cfg)
        self.fusion = ElementwiseProduct(grid_dim, q_dim, cfg)
        self.classifier = LogitClassifier(cfg.hidden, n_answers, cfg)

    @property
    def word_embedding(self) -> nn.Embedding:
        """The question word table (filled from GloVe by the task's `word_vectors`)."""
        return self.question.embedding

    def forward(self, grid: GridFeatures, tokens: torch.Tensor) -> torch.Tensor:
        """grid: feats [B, N, C], mask [B, N]; tokens [B, T] (0 = trailing padding) → logits [B, A]."""
        if self.cfg.attend_padding and tokens.shape[1] < self.cfg.question_pad_to:
            tokens = nn.functional.pad(tokens, (0, self.cfg.question_pad_to - tokens.shape[1]))  # [B, T']
        states, q_mask = self.question(tokens)  # [B, T, Hq], [B, T]
        if self.cfg.attend_padding:
            q_mask = torch.ones_like(q_mask)  # MMF: one softmax over all positions, padding included
        q = self.question_att(self.question_dropout(states), q_mask)  # [B, G * Hq]
        feats, v_mask = grid_inputs(grid, tokens.shape[0])  # [B, N, C], [B, N]
        feats = feats.to(self.question_att.fc.weight.dtype)  # [B, N, C] (fp16 caches are upcast)
        v = self.image_att(feats, v_mask, q)  # [B, C]
        return self.classifier(self.fusion(v, q))  # [B, A]


register_model("pythia", family="vqa", config_cls=PythiaConfig, builder=Pythia)
