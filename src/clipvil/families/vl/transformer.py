"""CLIP-ViL_p: a single-stream BERT over [text tokens ; CLIP grid tokens], the CLIP tower trained end to end.

Reference: clip-vil/CLIP-ViL, ``CLIP-ViL-Pretrain`` (``src/lxrt/modeling.py`` run with ``--visualbert_style
--use_clip --use_positional_embedding --sub_sampling``; ``src/tasks/vqa_model.py``; ``src/pretrain/``), on
LXMERT's code (airsplay/lxmert). The transformer is transformers' BERT, loaded from a local directory:

    text:    BERT embeddings of the ids (word + position + token type 0 → LayerNorm → dropout)   [B, T, H]
    visual:  visual(pixels, content_hw) → GridFeatures [B, N, C] (padded cells zeroed)
             + row_embedding[r] + col_embedding[c] in feature space (C wide; cell (r, c) of the grid)
             → k real cells sampled per image (pre-training), or all cells (fine-tuning)
             → visn_fc Linear(C → H) (+ token type 1) → visn_layer_norm → dropout                 [B, K, H]
    joint:   BertEncoder over [text ; visual]; padded tokens and padded / unsampled cells are masked
             as keys                                                                            [B, T+K, H]
    pooled:  pooler.dense on the [CLS] state (no tanh, as the reference)                        [B, H]
    heads:   MLM (tied to the word embeddings), ITM, QA (`clipvil.families.vl.heads`)

The visual embedding, token sampling and the tower's training options live in `clipvil.families.vl.visual`.
`VLTransformer.forward` is `embed_text` + `visual_embed(..., modality())` + `joint`; the NLVR2 pair model
(`clipvil.families.vl.pair`) and CLIP-ViL+ (`clipvil.families.vl.clip_text`, same three methods over CLIP's text
tower) compose the same steps.

Images of one batch may have different real sizes inside one padded grid (top-left content, as every
clipvil tower pads): cell (r, c) of the padded grid is cell (r, c) of its image, so a 12×20 and a 20×12
image share a 20×20 batch grid and get the same positions as alone.

Build with `build_vl_model` (or `build_model("vl_transformer", ...)`). Its order is the fix of a bug of the
reference: there BERT's weight init ran over the whole model after CLIP was loaded and overwrote the CLIP
layers; here (1) BERT-style init of the new layers only, (2) the BERT checkpoint, (3) the CLIP state last.

BatchNorm of a ResNet trunk: the reference trains with ``model.train()`` and nothing else, so the trunk's
BatchNorm layers use and update per-GPU batch statistics (`VLConfig.batchnorm = "train"`, the default);
``"frozen"`` keeps them in eval mode (running statistics fixed; their affine weights still train).

Deviations from the reference, on purpose:
- visual tokens are sampled among the *real* cells only, with a caller's torch.Generator (the reference drew
  100 of all 240 cells, zero padding included, from numpy's global state);
- `modality_embedding` adds BERT's token-type embedding 1 to visual tokens (the reference adds none: False);
- the ViT branch works too (the reference's resized ViT position table was zero; clipvil's towers fix it).

Family "vl" (registry): ``builder(cfg, *, bert_dir, visual, visual_state=None, n_answers=0,
pretrain_heads=True) -> VLModel``; `VLModel.forward(pixels, content_hw, input_ids, attention_mask) -> [B, A]`
and `VLModel.forward_pretrain(...) -> PretrainOutput`.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from transformers import BertConfig, BertForPreTraining, BertModel
from transformers.masking_utils import create_bidirectional_mask
from transformers.utils import logging as hf_logging

from clipvil.engine.models import register_model
from clipvil.families.vl.heads import ITMHead, MLMHead, QAHead
from clipvil.families.vl.visual import (
    FrozenBatchNormTrunk,
    VisualEmbedding,
    enable_visual_checkpointing,
    sample_visual_tokens,
)
from clipvil.types import GridFeatures

log = logging.getLogger(__name__)

BATCHNORM_MODES = ("train", "frozen")


@dataclass(frozen=True)
class VLConfig:
    """Architecture of the CLIP-ViL_p transformer; widths come from the BERT directory's config.json."""

    layers: int = 0  # transformer layers kept from the BERT checkpoint (its first ones); 0 = all (paper: 12)
    max_rows: int = 20  # rows of the learned row-position table: the largest grid height accepted
    max_cols: int = 20  # columns of the learned column-position table: the largest grid width accepted
    visual_tokens: int = 100  # k sampled per image in pre-training (paper: 100 of 240); passed as n_visual
    modality_embedding: bool = True  # add token type 1 to visual tokens (text has 0); False = the reference
    pooler_tanh: bool = False  # tanh after pooler.dense (BERT has it; the reference comments it out)
    batchnorm: str = "train"  # trunk BatchNorm: "train" (batch statistics, the reference) or "frozen" (eval)
    grad_checkpointing: bool = False  # recompute the visual tower's stages in backward (less memory)
    from_scratch: bool = False  # True: BERT-style random init, only config.json read from the BERT directory

    def __post_init__(self) -> None:
        if self.batchnorm not in BATCHNORM_MODES:
            raise ValueError(f"VLConfig: batchnorm must be one of {BATCHNORM_MODES}, got {self.batchnorm!r}")
        if min(self.max_rows, self.max_cols) < 1 or self.layers < 0 or self.visual_tokens < 1:
            raise ValueError(f"VLConfig: sizes must be positive, got {self}")


@dataclass
class VLOutput:
    """Final hidden states of the joint sequence, split by modality."""

    text: torch.Tensor  # [B, T, H]
    visual: torch.Tensor  # [B, K, H]
    visual_mask: torch.Tensor  # [B, K] bool: True = a real (unpadded) cell
    visual_index: torch.Tensor  # [B, K] int64: the grid cell (row-major) each visual token came from
    pooled: torch.Tensor  # [B, H]


@dataclass
class PretrainOutput:
    """Logits of the pre-training heads (losses are the task's)."""

    mlm: torch.Tensor  # [B, T, V], or [M, V] at the positions of `mlm_mask` (row-major) when one was given
    itm: torch.Tensor  # [B, 2]
    qa: torch.Tensor | None  # [B, A] when the model has a QA head
    encoded: VLOutput


class Pooler(nn.Module):
    """pooled = dense(state of the first token) (tanh'ed when `tanh`); names match BERT's ``pooler.dense``."""

    def __init__(self, hidden: int, tanh: bool) -> None:
        super().__init__()
        self.dense = nn.Linear(hidden, hidden)
        self.activation = nn.Tanh() if tanh else nn.Identity()

    def forward(self, states: torch.Tensor) -> torch.Tensor:
        """states [B, L, H] → [B, H]."""
        return self.activation(self.dense(states[:, 0]))  # [B, H]


class VLTransformer(nn.Module):
    """(GridFeatures, token ids) → VLOutput: BERT embeddings + encoder over [text ; visual tokens]."""

    def __init__(self, cfg: VLConfig, bert_config: BertConfig, *, grid_dim: int) -> None:
        super().__init__()
        self.cfg = cfg
        self.bert = BertModel(
            bert_config, add_pooling_layer=False
        )  # embeddings + encoder (post_init inits them)
        self.visual_embed = VisualEmbedding(grid_dim, bert_config, cfg.max_rows, cfg.max_cols)
        self.pooler = Pooler(bert_config.hidden_size, cfg.pooler_tanh)

    @property
    def hidden(self) -> int:
        return int(self.bert.config.hidden_size)

    def forward(
        self,
        grid: GridFeatures,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        n_visual: int | None = None,
        generator: torch.Generator | None = None,
    ) -> VLOutput:
        """grid [B, N, C]; input_ids [B, T] ([CLS] first); attention_mask [B, T] (1/True = real token);
        n_visual: visual tokens sampled per image (None = every cell); generator: the sampling's seed."""
        text = self.embed_text(input_ids)  # [B, T, H]
        visual, valid, index = self.visual_embed(grid, self.modality(), n_visual, generator)  # [B, K, H], [B, K] x2
        return self.joint(text, attention_mask, visual, valid, index)

    def embed_text(self, input_ids: torch.Tensor) -> torch.Tensor:
        """BERT embeddings of the ids (token type 0): [B, T] → [B, T, H]."""
        return self.bert.embeddings(input_ids=input_ids, token_type_ids=torch.zeros_like(input_ids))  # [B, T, H]

    def modality(self) -> torch.Tensor | None:
        """The vector added to visual tokens (token type 1) [H], or None (cfg.modality_embedding False)."""
        return self.bert.embeddings.token_type_embeddings.weight[1] if self.cfg.modality_embedding else None

    def joint(
        self,
        text: torch.Tensor,
        attention_mask: torch.Tensor,
        visual: torch.Tensor,
        valid: torch.Tensor,
        index: torch.Tensor,
    ) -> VLOutput:
        """The encoder over [text ; visual]: text [B, T, H] with attention_mask [B, T], visual tokens [B, K, H]
        with valid [B, K] (False = masked as a key) and their cell index [B, K] (carried into VLOutput)."""
        joint = torch.cat([text, visual.to(text.dtype)], dim=1)  # [B, T+K, H]
        keys = torch.cat([attention_mask.bool(), valid], dim=1)  # [B, T+K]
        mask = create_bidirectional_mask(config=self.bert.config, inputs_embeds=joint, attention_mask=keys)
        states = self.bert.encoder(joint, attention_mask=mask).last_hidden_state  # [B, T+K, H]
        t = text.shape[1]
        return VLOutput(states[:, :t], states[:, t:], valid, index, self.pooler(states))


class VLModel(FrozenBatchNormTrunk):
    """The CLIP-ViL_p model: `visual` tower (pixels → GridFeatures), `transformer`, and the heads `mlm`, `itm`
    (pre-training; None without `pretrain_heads`) and `qa` (None when n_answers is 0).

    Construction BERT-initialises everything but `visual`, which it never touches; weights are loaded by
    `build_vl_model`. Optimise `visual` on its own (`parameter_groups`): the paper uses SGD there, AdamW for
    the rest."""

    def __init__(
        self,
        cfg: VLConfig,
        bert_config: BertConfig,
        visual: nn.Module,
        *,
        n_answers: int = 0,
        pretrain_heads: bool = True,
    ) -> None:
        super().__init__()
        grid_dim = getattr(visual, "dim", None)
        if not isinstance(grid_dim, int):
            raise TypeError(
                f"VLModel: the visual tower {type(visual).__name__} has no integer `dim` (grid width)"
            )
        self.cfg = cfg
        self.transformer = VLTransformer(cfg, bert_config, grid_dim=grid_dim)
        hidden = self.transformer.hidden
        self.mlm = MLMHead(bert_config) if pretrain_heads else None
        self.itm = ITMHead(hidden) if pretrain_heads else None
        self.qa = QAHead(hidden, n_answers, eps=bert_config.layer_norm_eps) if n_answers else None
        init = self.transformer.bert._init_weights  # BERT's init: normal(0, initializer_range), LayerNorm 1/0
        for module in (self.transformer.visual_embed, self.transformer.pooler, self.mlm, self.itm, self.qa):
            if module is not None:
                module.apply(init)
        if self.mlm is not None:
            nn.init.zeros_(self.mlm.bias)
            self.mlm.decoder.weight = self.transformer.bert.embeddings.word_embeddings.weight  # tied
        self.visual = visual  # registered last and never initialised here: its weights are the caller's
        if cfg.grad_checkpointing:
            enable_visual_checkpointing(visual)
        self.train(self.training)

    def encode(
        self,
        pixels: torch.Tensor,
        content_hw: Sequence[tuple[int, int]] | None,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        n_visual: int | None = None,
        generator: torch.Generator | None = None,
    ) -> VLOutput:
        """pixels [B, 3, H, W] (normalised, zero-padded); content_hw: each image's real (h, w) in pixels."""
        grid = self.visual(pixels, content_hw)  # GridFeatures [B, N, C]
        return self.transformer(grid, input_ids, attention_mask, n_visual, generator)

    def forward_pretrain(
        self,
        pixels: torch.Tensor,
        content_hw: Sequence[tuple[int, int]] | None,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        n_visual: int | None = None,
        generator: torch.Generator | None = None,
        mlm_mask: torch.Tensor | None = None,
    ) -> PretrainOutput:
        """MLM, ITM and (with a QA head) QA logits. mlm_mask [B, T] bool: MLM logits only there ([M, V], rows
        in the order of ``labels[mlm_mask]``), which saves the [B, T, V] tensor."""
        if self.mlm is None or self.itm is None:
            raise ValueError(
                "VLModel.forward_pretrain: built without pre-training heads (pretrain_heads=False)"
            )
        enc = self.encode(pixels, content_hw, input_ids, attention_mask, n_visual, generator)
        text = enc.text if mlm_mask is None else enc.text[mlm_mask]  # [B, T, H] or [M, H]
        qa = self.qa(enc.pooled) if self.qa is not None else None  # [B, A]
        return PretrainOutput(self.mlm(text), self.itm(enc.pooled), qa, enc)

    def forward(
        self,
        pixels: torch.Tensor,
        content_hw: Sequence[tuple[int, int]] | None,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        n_visual: int | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Classification (VQA, GQA, SNLI-VE): answer logits [B, A] from the pooled state, all cells used."""
        if self.qa is None:
            raise ValueError("VLModel.forward: built without a QA head (n_answers=0)")
        return self.qa(self.encode(pixels, content_hw, input_ids, attention_mask, n_visual, generator).pooled)

    def parameter_groups(self) -> dict[str, list[tuple[str, nn.Parameter]]]:
        """Trainable (name, parameter) pairs: "visual" (the tower) and "transformer" (the rest, heads
        included; the tied MLM decoder counted once, as the word embeddings)."""
        visual_ids = {id(p) for p in self.visual.parameters()}
        groups: dict[str, list[tuple[str, nn.Parameter]]] = {"visual": [], "transformer": []}
        for name, p in self.named_parameters():  # deduplicated: each tensor once
            if p.requires_grad:
                groups["visual" if id(p) in visual_ids else "transformer"].append((name, p))
        return groups


# ----------------------------------------------------------------------------------------------- building
def bert_config_from(bert_dir: str | Path, layers: int = 0) -> BertConfig:
    """The BertConfig of a local directory (config.json), keeping its first `layers` layers when > 0."""
    path = Path(bert_dir)
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"{path}: no config.json (pass a local BERT directory)")
    config = BertConfig.from_pretrained(str(path), local_files_only=True)
    if layers > config.num_hidden_layers:
        raise ValueError(f"VLConfig.layers {layers} > the {config.num_hidden_layers} layers of {path}")
    if layers:
        config.num_hidden_layers = layers
    return config


# BERT-for-pre-training checkpoint prefix → VLModel prefix (cls.predictions.decoder is the tied embedding)
_BERT_TO_VL = {
    "bert.embeddings.": "transformer.bert.embeddings.",
    "bert.encoder.": "transformer.bert.encoder.",
    "bert.pooler.": "transformer.pooler.",
    "cls.predictions.transform.": "mlm.transform.",
    "cls.predictions.bias": "mlm.bias",
    "cls.seq_relationship.": "itm.seq_relationship.",
}


def load_bert_weights(model: VLModel, bert_dir: str | Path) -> list[str]:
    """Copies a local BERT checkpoint into `model` (embeddings, encoder, pooler; the MLM transform and the
    next-sentence head → ITM where the checkpoint has them); returns the VLModel keys it set."""
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # its load report lists every key; a one-line summary is logged below
    try:
        src, info = BertForPreTraining.from_pretrained(
            str(bert_dir),
            config=copy.deepcopy(model.transformer.bert.config),
            local_files_only=True,
            output_loading_info=True,
        )
    except OSError as err:
        raise FileNotFoundError(f"{bert_dir}: cannot load BERT weights ({err})".splitlines()[0]) from None
    finally:
        hf_logging.set_verbosity(verbosity)
    missing = set(info["missing_keys"])
    own = model.state_dict()
    update = {}
    for key, value in src.state_dict().items():
        target = next((key.replace(a, b, 1) for a, b in _BERT_TO_VL.items() if key.startswith(a)), None)
        if key not in missing and target in own:
            update[target] = value
    model.load_state_dict(update, strict=False)
    log.info(
        "BERT weights from %s: %d tensors loaded; initialised (not in it): %s",
        bert_dir,
        len(update),
        ", ".join(sorted(missing)) or "none",
    )
    return sorted(update)


def build_vl_model(
    cfg: VLConfig,
    bert_dir: str | Path,
    visual: nn.Module,
    visual_state: Mapping[str, torch.Tensor] | None = None,
    *,
    n_answers: int = 0,
    pretrain_heads: bool = True,
) -> VLModel:
    """A VLModel: BERT-style init of the new layers, then the BERT checkpoint of `bert_dir` (unless
    cfg.from_scratch), then `visual_state` (the tower's own state dict, strict) last.

    visual: the tower, e.g. ``build_encoder("RN50", weights=..., trainable=True)``; with visual_state None
        its current weights are kept as they are. n_answers: outputs of the QA head (0: none).
    pretrain_heads: build the MLM and ITM heads (fine-tuning needs neither)."""
    model = VLModel(
        cfg,
        bert_config_from(bert_dir, cfg.layers),
        visual,
        n_answers=n_answers,
        pretrain_heads=pretrain_heads,
    )
    if not cfg.from_scratch:
        load_bert_weights(model, bert_dir)
    if visual_state is not None:
        own = model.visual.state_dict()
        missing, unexpected = sorted(set(own) - set(visual_state)), sorted(set(visual_state) - set(own))
        if missing or unexpected:
            raise ValueError(
                f"visual_state does not fit {type(visual).__name__}: missing {missing[:3]}, "
                f"unexpected {unexpected[:3]}"
            )
        model.visual.load_state_dict(dict(visual_state), strict=True)
    return model


register_model("vl_transformer", family="vl", config_cls=VLConfig, builder=build_vl_model)

__all__ = [
    "PretrainOutput",
    "VLConfig",
    "VLModel",
    "VLOutput",
    "VLTransformer",
    "VisualEmbedding",
    "bert_config_from",
    "build_vl_model",
    "enable_visual_checkpointing",
    "load_bert_weights",
    "sample_visual_tokens",
]
