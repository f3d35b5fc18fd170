"""`build_encoder(name, weights=None, trainable=False)`: every supported open_clip tower by name, and timm baselines.

Weights come from local files only (see clipvil.encoders.weights for the formats). Without weights the tower
is randomly initialised — fine for tests and smoke runs, and always reported as "random".

Tower families (`tower_family`): the open_clip ResNets, the open_clip ViTs, open_clip towers on a timm trunk with a
convolutional map (ConvNeXt), and the timm ImageNet baselines. open_clip towers on timm transformer trunks (EVA,
SigLIP, Swin, ...) give tokens, not a map, and are refused with a clear error; `list_encoders()` leaves them out.
"""

from __future__ import annotations

import logging
from pathlib import Path

import open_clip
import timm
import torch
from torch import nn

from clipvil.encoders.activation import choose_activation
from clipvil.encoders.clip_towers import ClipResNetTower, ClipTimmTower, ClipViTTower
from clipvil.encoders.shipped import is_shipped_name, resolve_weights, shipped_tower
from clipvil.encoders.small_clip import register_model_configs
from clipvil.encoders.timm_towers import TimmGridTower
from clipvil.encoders.tower import Tower, WeightsInfo
from clipvil.encoders.weights import (
    WeightFile,
    WeightsError,
    load_checked,
    read_weights,
    select_prefix,
    sha256_file,
)

log = logging.getLogger(__name__)
register_model_configs()  # clipvil-rn-tiny, clipvil-vit-tiny (model_configs/) join open_clip.list_models()

# name → timm architecture of the ImageNet baselines (the paper's "ImageNet ResNet-50" row)
TIMM_BASELINES: dict[str, str] = {"imagenet-rn50": "resnet50"}
RANDOM_INIT_SEED = 0  # towers built without a weight file are seeded, so every process builds the same one
# timm modules whose models end in a convolutional [B, C, h, w] map an open_clip tower can use as its grid
TIMM_CONV_MODULES = ("convnext",)
FAMILIES = ("clip-resnet", "clip-vit", "clip-timm-conv", "timm-imagenet")

__all__ = ["FAMILIES", "WeightsInfo", "build_encoder", "canonical_name", "list_encoders", "tower_family"]


def canonical_name(name: str) -> str:
    """OpenAI spellings ("ViT-B/32") → open_clip's ("ViT-B-32"); unknown names get a clear error."""
    if name in TIMM_BASELINES:
        return name
    candidate = name.replace("/", "-")
    if candidate in open_clip.list_models():
        return candidate
    raise ValueError(
        f"unknown encoder {name!r}: use an open_clip model name (e.g. RN50, RN101, RN50x4, RN50x16, ViT-B-32, "
        f"ViT-B-16, ViT-L-14, ViT-B-32-quickgelu; see list_encoders()) or one of {sorted(TIMM_BASELINES)}"
    )


def _family_of_config(cfg: dict | None) -> str | None:
    vision = (cfg or {}).get("vision_cfg")
    if not vision:
        return None
    if vision.get("timm_model_name"):
        conv = timm.models.is_model_in_modules(vision["timm_model_name"], list(TIMM_CONV_MODULES))
        return "clip-timm-conv" if conv else None
    return "clip-resnet" if isinstance(vision.get("layers"), (list, tuple)) else "clip-vit"


def tower_family(name: str) -> str:
    """The family (one of FAMILIES) of tower `name` builds, from its config alone (nothing is built)."""
    cname = canonical_name(name)
    if cname in TIMM_BASELINES:
        return "timm-imagenet"
    family = _family_of_config(open_clip.get_model_config(cname))
    if family is None:
        cfg = open_clip.get_model_config(cname) or {}
        trunk = cfg.get("vision_cfg", {}).get("timm_model_name")
        what = f"its timm trunk {trunk!r} gives tokens, not a feature map" if trunk else "it has no vision tower"
        raise ValueError(f"encoder {cname!r} has no grid-feature support: {what} "
                         f"(supported families: {', '.join(FAMILIES)})")
    return family


def list_encoders() -> list[str]:
    """Every name build_encoder accepts (open_clip towers of a supported family, and the timm baselines)."""
    clip = [n for n in open_clip.list_models() if _family_of_config(open_clip.get_model_config(n)) is not None]
    return sorted(TIMM_BASELINES) + clip


def _weights_info(weights: str | Path | None, loaded: WeightFile | None) -> WeightsInfo:
    if weights is None or loaded is None:
        return WeightsInfo(None, f"random-seed{RANDOM_INIT_SEED}", "random")
    return WeightsInfo(str(weights), sha256_file(weights), loaded.format)


def build_encoder(
    name: str, weights: str | Path | None = None, trainable: bool = False, block: int = -1
) -> Tower:
    """Builds a grid-feature encoder.

    name: an open_clip model name (RN50, ViT-B-32, ViT-B-32-quickgelu, ...; "ViT-B/32" also accepted),
        "imagenet-rn50", or a shipped tower's short name (clip-vit-tiny: its architecture with its weights).
    weights: a local weight file (OpenAI TorchScript archive, open_clip checkpoint, safetensors, timm file) or
        a shipped tower's short name; None = random initialisation (logged as a warning).
    trainable: False freezes the tower (no grads, always eval mode).
    block: ViT only — which transformer block's tokens (-1 last, -2 penultimate).
    """
    if is_shipped_name(name):
        shipped = shipped_tower(name)
        name, weights = shipped.architecture, shipped.weights if weights is None else weights
    weights = resolve_weights(weights)
    cname = canonical_name(name)
    family = tower_family(cname)
    loaded = read_weights(weights) if weights is not None else None
    info = _weights_info(weights, loaded)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(RANDOM_INIT_SEED)  # random towers are the same in every process (resume, ranks)
        if family == "timm-imagenet":
            tower: Tower = _build_timm(cname, loaded, weights, info, trainable)
        else:
            tower = _build_clip(cname, family, loaded, weights, info, trainable, block)
    if weights is None:
        log.warning("encoder %s has RANDOM weights (seed %d; no --weights file given)", cname, RANDOM_INIT_SEED)
    return tower


def _build_timm(
    cname: str, loaded: WeightFile | None, weights: str | Path | None, info: WeightsInfo, trainable: bool
) -> Tower:
    model = timm.create_model(TIMM_BASELINES[cname], pretrained=False)
    if loaded is not None and weights is not None:
        load_checked(model, loaded.state, Path(weights), cname)
    return TimmGridTower(cname, model, info, trainable)


def _build_clip(
    cname: str, family: str, loaded: WeightFile | None, weights: str | Path | None, info: WeightsInfo,
    trainable: bool, block: int,
) -> Tower:
    cfg = open_clip.get_model_config(cname)
    assert cfg is not None  # tower_family checked it
    activation = None
    if family == "clip-vit":
        activation, warning = choose_activation(cname, bool(cfg.get("quick_gelu", False)), loaded,
                                                None if weights is None else str(weights), set(open_clip.list_models()))
        if warning:
            log.warning("%s", warning)
    quick = activation is not None and activation.name == "quick_gelu"
    visual: nn.Module = open_clip.model._build_vision_tower(cfg["embed_dim"], cfg["vision_cfg"], quick_gelu=quick)
    if loaded is not None and weights is not None:
        vstate = select_prefix(loaded.state, "visual.")
        if not vstate:
            raise WeightsError(f"{weights}: no 'visual.*' weights in this file — is it a CLIP checkpoint?")
        load_checked(visual, vstate, Path(weights), cname)
    if family == "clip-resnet":
        return ClipResNetTower(cname, visual, info, trainable)  # type: ignore[arg-type]
    if family == "clip-vit":
        assert activation is not None
        return ClipViTTower(cname, visual, info, activation, trainable, block)  # type: ignore[arg-type]
    return ClipTimmTower(cname, visual, info, trainable)
