"""A whole open_clip CLIP (image + text towers) for the contrastive tasks: built by name, loaded from a local
weight file, partly frozen, with open_clip's own image transforms.

    model = create_clip("clipvil-rn-tiny", weights=None)         # random init (seeded by the engine)
    model = create_clip("RN50", weights="RN50.pt")              # OpenAI archive: QuickGELU text tower
    frozen = freeze(model, text=True, image_stages=2)           # ["text", "visual stage 0", "visual stage 1"]
    train_tf, eval_tf = clip_transforms(model, augment=True)

Weight files are read by `clipvil.encoders.weights.read_weights` (OpenAI TorchScript archives, open_clip
trainer checkpoints with or without `module.`, safetensors) and must fit the architecture exactly.

Image-tower stages (what `image_stages=N` freezes, the first N):
- ResNet: 0 = the stem (conv1..bn3), 1-4 = layer1..layer4, 5 = the attention pool;
- ViT: 0 = patch embedding, class/position embeddings and ln_pre, 1..L = the L blocks, L+1 = ln_post + proj.
Frozen BatchNorm layers keep their running statistics (`set_frozen_batchnorm_eval` puts them in eval mode).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import open_clip
import torch
from torch import nn

from clipvil.encoders import registry as _encoders  # noqa: F401  (registers clipvil-rn-tiny / clipvil-vit-tiny)
from clipvil.encoders.shipped import resolve_weights
from clipvil.encoders.weights import WeightsError, check_compatible, read_weights

log = logging.getLogger(__name__)
OPENAI_EXTRA_KEYS = ("input_resolution", "context_length", "vocab_size")  # ints stored in OpenAI archives
TEXT_MODULES = ("transformer", "token_embedding", "ln_final")  # open_clip CLIP's text tower children
TEXT_PARAMS = ("positional_embedding", "text_projection")  # ... and its bare parameters


def _config(name: str) -> dict:
    cfg = open_clip.get_model_config(name)
    if cfg is None:
        raise ValueError(f"unknown open_clip architecture {name!r} (known: clipvil-rn-tiny, clipvil-vit-tiny, "
                         "RN50, ViT-B-32, ... see open_clip.list_models())")
    vision, text = cfg.get("vision_cfg", {}), cfg.get("text_cfg")
    if text is None or vision.get("timm_model_name") or text.get("hf_model_name"):
        raise ValueError(f"{name}: only open_clip's own CLIP towers (ModifiedResNet / ViT + text transformer) "
                         "are supported by the contrastive tasks")
    return cfg


def create_clip(name: str, weights: str | Path | None = None, quick_gelu: bool | None = None) -> nn.Module:
    """An open_clip CLIP `name`, random (from the current torch seed) or loaded from `weights`.

    quick_gelu: None = True for OpenAI archives (their towers were trained with QuickGELU), else the
    architecture's own setting. Raises WeightsError when the file does not fit the architecture."""
    _config(name)
    weights = resolve_weights(weights)
    loaded = read_weights(weights) if weights is not None else None
    quick = quick_gelu if quick_gelu is not None else bool(loaded and loaded.format == "openai-torchscript")
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # open_clip warns "no pretrained weights loaded" on the root logger
    try:
        model = open_clip.create_model(name, pretrained=None, force_quick_gelu=quick)
    finally:
        root.setLevel(level)
    if loaded is not None:
        state = {k: v for k, v in loaded.state.items() if k not in OPENAI_EXTRA_KEYS}
        own = model.state_dict()
        check_compatible(own, state, Path(weights), name)  # type: ignore[arg-type]
        model.load_state_dict({k: v.to(own[k].dtype) for k, v in state.items()}, strict=True)
        log.info("CLIP %s loaded from %s (%s)", name, weights, loaded.format)
    return model.float()


def image_stages(visual: nn.Module) -> list[list[nn.Module | nn.Parameter]]:
    """The image tower's stages in input-to-output order (see the module docstring)."""
    if isinstance(visual, open_clip.modified_resnet.ModifiedResNet):
        stem = [visual.conv1, visual.bn1, visual.conv2, visual.bn2, visual.conv3, visual.bn3]
        return [stem, [visual.layer1], [visual.layer2], [visual.layer3], [visual.layer4], [visual.attnpool]]
    if isinstance(visual, open_clip.transformer.VisionTransformer):
        embed = [visual.conv1, visual.class_embedding, visual.positional_embedding, visual.ln_pre]
        blocks = [[block] for block in visual.transformer.resblocks]
        return [embed, *blocks, [visual.ln_post, visual.proj]]
    raise ValueError(f"image tower {type(visual).__name__}: no stage layout known (ModifiedResNet or ViT)")


def _parameters(items: list[nn.Module | nn.Parameter]) -> list[nn.Parameter]:
    params: list[nn.Parameter] = []
    for item in items:
        if isinstance(item, nn.Parameter):
            params.append(item)
        elif item is not None:
            params.extend(item.parameters())
    return params


def freeze(model: nn.Module, text: bool = False, image_stages_frozen: int = 0) -> list[str]:
    """Freezes the text tower (`text`) and the first `image_stages_frozen` image stages (-1: all of them).

    Returns what was frozen, e.g. ["text", "visual stage 0"]; their parameters get requires_grad=False."""
    frozen: list[str] = []
    if text:
        for name in TEXT_MODULES:
            for p in getattr(model, name).parameters():
                p.requires_grad_(False)
        for name in TEXT_PARAMS:
            param = getattr(model, name, None)
            if isinstance(param, nn.Parameter):
                param.requires_grad_(False)
        frozen.append("text")
    stages = image_stages(model.visual)
    n = len(stages) if image_stages_frozen < 0 else image_stages_frozen
    if n > len(stages):
        raise ValueError(f"freeze_image_stages={image_stages_frozen}: the image tower has only {len(stages)} stages")
    for i, stage in enumerate(stages[:n]):
        for p in _parameters(stage):
            p.requires_grad_(False)
        frozen.append(f"visual stage {i}")
    return frozen


def set_frozen_batchnorm_eval(module: nn.Module) -> None:
    """Puts every BatchNorm whose parameters are all frozen in eval mode (running statistics stay fixed)."""
    for child in module.modules():
        if isinstance(child, nn.modules.batchnorm._BatchNorm):
            params = list(child.parameters())
            if params and not any(p.requires_grad for p in params):
                child.eval()


Transform = Callable[..., torch.Tensor]


def clip_transforms(model: nn.Module, augment: bool = True) -> tuple[Transform, Transform]:
    """(training transform, evaluation transform) of `model`, as open_clip makes them
    (`open_clip.image_transform(size, is_train=...)` with the model's mean/std/interpolation/resize mode).

    augment=False uses the evaluation transform for training too (deterministic pixels)."""
    cfg = open_clip.get_model_preprocess_cfg(model)
    kwargs = {"mean": cfg["mean"], "std": cfg["std"], "interpolation": cfg.get("interpolation"),
              "resize_mode": cfg.get("resize_mode")}
    evaluate = open_clip.image_transform(cfg["size"], is_train=False, **kwargs)
    train = open_clip.image_transform(cfg["size"], is_train=True, **kwargs) if augment else evaluate
    return train, evaluate


def tokenizer(name: str) -> Callable[[list[str]], torch.Tensor]:
    """open_clip's tokenizer of architecture `name` (the CLIP BPE shipped inside open_clip)."""
    return open_clip.get_tokenizer(name)


__all__ = ["WeightsError", "clip_transforms", "create_clip", "freeze", "image_stages", "set_frozen_batchnorm_eval",
           "tokenizer"]
