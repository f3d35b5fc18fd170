"""clipvil's own small open_clip architectures, and export of a trained CLIP as an open_clip checkpoint.

The configs live in ``model_configs/*.json`` (open_clip's model-config format) and are registered with
``open_clip.add_model_config``, after which ``open_clip.create_model("clipvil-rn-tiny")`` and clipvil's
``build_encoder("clipvil-rn-tiny")`` know them like any built-in name:

- ``clipvil-rn-tiny``: a ModifiedResNet with one bottleneck per stage, width 32, 96x96 input (3x3 grid of
  1024 channels at stride 32), embed dim 128;
- ``clipvil-vit-tiny``: a ViT of 4 blocks, width 128, patch 16, 128x128 input (8x8 grid), embed dim 128.

Both have a 2-layer, width-128 text transformer over the CLIP BPE vocabulary (49408 tokens, context 77), so
open_clip's tokenizer and transforms apply unchanged. A contrastive step on a batch of 32 takes about half a
second on one CPU core: a few hundred steps train in minutes (smoke runs and tests, not paper numbers).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import open_clip
import torch
from torch import nn

from clipvil.common.atomic import atomic_write

MODEL_CONFIG_DIR = Path(__file__).parent / "model_configs"
SMALL_MODELS: tuple[str, ...] = ("clipvil-rn-tiny", "clipvil-vit-tiny")


def register_model_configs() -> list[str]:
    """Adds clipvil's model configs to open_clip's registry (idempotent); returns the names added."""
    names = sorted(p.stem for p in MODEL_CONFIG_DIR.glob("*.json"))
    known = set(open_clip.list_models())
    if names and not all(n in known for n in names):
        open_clip.add_model_config(MODEL_CONFIG_DIR)  # appends the folder to open_clip's search path, rescans
    return names


def _unwrap(model: nn.Module) -> nn.Module:
    """The CLIP inside a DDP / FSDP-style wrapper (`.module`), or the model itself."""
    while hasattr(model, "module") and isinstance(model.module, nn.Module):
        model = model.module
    return model


def _atomic_write(path: Path, write: Callable[[Path], object]) -> None:
    """`write(tmp)` then rename over `path`, durably: a reader never sees a half-written file."""
    atomic_write(path, write)


def export_open_clip_checkpoint(
    model: nn.Module, model_name: str, path: str | Path, *, epoch: int | None = None
) -> tuple[Path, Path]:
    """Writes `model` (an open_clip CLIP, possibly DDP-wrapped) where open_clip and clipvil both load it.

    The checkpoint is the form open_clip's trainer saves: ``{"epoch", "name", "state_dict"}`` (no
    ``module.`` prefix) via ``torch.save`` — or a plain state dict when `path` ends in ``.safetensors``.
    Beside it goes ``<model_name>.json``, the architecture's open_clip config, so the folder can be handed
    to ``open_clip.add_model_config`` on a machine without clipvil. Load it back with
    ``open_clip.create_model(model_name, pretrained=str(path))`` or
    ``clipvil.encoders.build_encoder(model_name, weights=path)``. Both files are written atomically.

    The config is open_clip's registered config of `model_name`: a model built with ``force_*`` overrides
    (other image size, context length) is exported under its base config and will not load back.
    Returns (checkpoint path, config path).
    """
    path = Path(path)
    cfg = open_clip.get_model_config(model_name)
    if cfg is None:
        raise ValueError(f"open_clip has no model config {model_name!r} (see open_clip.list_models())")
    state = {k: v.detach().cpu().contiguous() for k, v in _unwrap(model).state_dict().items()}
    missing = [k for k in ("visual.", "logit_scale") if not any(s.startswith(k) for s in state)]
    if missing:
        raise ValueError(f"{type(model).__name__} is not an open_clip CLIP model (no {missing} weights)")
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".safetensors":
        from safetensors.torch import save_file

        _atomic_write(path, lambda p: save_file(state, str(p), metadata={"name": model_name}))
    else:
        checkpoint = {"epoch": epoch, "name": model_name, "state_dict": state}
        _atomic_write(path, lambda p: torch.save(checkpoint, p))
    config_path = path.parent / f"{model_name}.json"
    text = json.dumps(cfg, indent=4) + "\n"
    _atomic_write(config_path, lambda p: p.write_text(text, encoding="utf-8"))
    return path, config_path


__all__ = ["MODEL_CONFIG_DIR", "SMALL_MODELS", "export_open_clip_checkpoint", "register_model_configs"]
