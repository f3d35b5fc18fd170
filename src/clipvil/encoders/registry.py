"""`build_encoder(name, weights=None, trainable=False)`: every open_clip tower by name, and timm baselines.

Weights come from local files only (see clipvil.encoders.weights for the formats). Without weights the tower
is randomly initialised — fine for tests and smoke runs, and always reported as "random".
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import open_clip
import torch
from open_clip.modified_resnet import ModifiedResNet
from open_clip.transformer import VisionTransformer
from torch import nn

from clipvil.encoders.clip_towers import ClipResNetTower, ClipTimmTower, ClipViTTower
from clipvil.encoders.protocol import Encoder
from clipvil.encoders.timm_towers import TimmGridTower
from clipvil.encoders.weights import WeightsError, load_checked, read_state_dict, select_prefix, sha256_file

log = logging.getLogger(__name__)

# name → timm architecture of the ImageNet baselines (the paper's "ImageNet ResNet-50" row)
TIMM_BASELINES: dict[str, str] = {"imagenet-rn50": "resnet50"}
RANDOM_INIT_SEED = 0  # towers built without a weight file are seeded, so every process builds the same one


@dataclass(frozen=True)
class WeightsInfo:
    """Where an encoder's weights came from (goes into feature-store provenance)."""

    path: str | None  # the file, or None for random initialisation
    sha256: str  # hex digest of the file, or "random-seed0" for seeded random initialisation
    format: str  # "openai-torchscript", "torch", "safetensors" or "random"


def canonical_name(name: str) -> str:
    """OpenAI spellings ("ViT-B/32") → open_clip's ("ViT-B-32"); unknown names get a clear error."""
    if name in TIMM_BASELINES:
        return name
    candidate = name.replace("/", "-")
    if candidate in open_clip.list_models():
        return candidate
    raise ValueError(
        f"unknown encoder {name!r}: use an open_clip model name (e.g. RN50, RN101, RN50x4, RN50x16, ViT-B-32, "
        f"ViT-B-16, ViT-L-14; see open_clip.list_models()) or one of {sorted(TIMM_BASELINES)}"
    )


def list_encoders() -> list[str]:
    """Every name build_encoder accepts."""
    return sorted(TIMM_BASELINES) + list(open_clip.list_models())


def _build_clip_visual(name: str, fmt: str) -> nn.Module:
    """The open_clip vision tower of `name` (fp32, randomly initialised)."""
    cfg = open_clip.get_model_config(name)
    if cfg is None or "vision_cfg" not in cfg:
        raise ValueError(f"open_clip has no vision config for {name!r}")
    # OpenAI's archives were trained with QuickGELU (matters for ViT towers); open_clip names say it themselves.
    quick_gelu = bool(cfg.get("quick_gelu", False)) or fmt == "openai-torchscript"
    return open_clip.model._build_vision_tower(cfg["embed_dim"], cfg["vision_cfg"], quick_gelu=quick_gelu)


def _wrap(name: str, visual: nn.Module, trainable: bool, block: int) -> nn.Module:
    if isinstance(visual, ModifiedResNet):
        return ClipResNetTower(name, visual, trainable)
    if isinstance(visual, VisionTransformer):
        return ClipViTTower(name, visual, trainable, block)
    if hasattr(visual, "trunk"):
        return ClipTimmTower(name, visual, trainable)
    raise ValueError(f"{name}: open_clip tower type {type(visual).__name__} has no grid-feature support")


def build_encoder(
    name: str, weights: str | Path | None = None, trainable: bool = False, block: int = -1
) -> Encoder:
    """Builds a grid-feature encoder.

    name: an open_clip model name (RN50, ViT-B-32, ...; "ViT-B/32" also accepted) or "imagenet-rn50".
    weights: a local weight file (OpenAI TorchScript archive, open_clip checkpoint, safetensors, timm file);
        None = random initialisation (logged as a warning).
    trainable: False freezes the tower (no grads, always eval mode).
    block: ViT only — which transformer block's tokens (-1 last, -2 penultimate).
    """
    cname = canonical_name(name)
    state, fmt = read_state_dict(weights) if weights is not None else ({}, "random")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(RANDOM_INIT_SEED)  # random towers are the same in every process (resume, ranks)
        tower = _build_tower(cname, state, fmt, weights, trainable, block)
    if weights is None:
        log.warning("encoder %s has RANDOM weights (seed %d; no --weights file given)", cname, RANDOM_INIT_SEED)
    tower.weights_info = WeightsInfo(
        str(weights) if weights is not None else None,
        sha256_file(weights) if weights is not None else f"random-seed{RANDOM_INIT_SEED}",
        fmt,
    )
    return tower  # type: ignore[return-value]


def _build_tower(
    cname: str, state: dict, fmt: str, weights: str | Path | None, trainable: bool, block: int
) -> nn.Module:
    if cname in TIMM_BASELINES:
        tower: nn.Module = TimmGridTower(cname, TIMM_BASELINES[cname], trainable)
        if weights is not None:
            load_checked(tower.model, state, Path(weights), cname)
    else:
        visual = _build_clip_visual(cname, fmt)
        if weights is not None:
            vstate = select_prefix(state, "visual.")
            if not vstate:
                raise WeightsError(f"{weights}: no 'visual.*' weights in this file — is it a CLIP checkpoint?")
            load_checked(visual, vstate, Path(weights), cname)
        tower = _wrap(cname, visual, trainable, block)
    return tower
