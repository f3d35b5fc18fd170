"""Reading weight files from local paths, in the formats users hold, and checking them against a model.

Formats (detected from the file, not its name):
- ``openai-torchscript``: OpenAI's released CLIP archives (``RN50.pt``, ``ViT-B-32.pt``, ...), TorchScript zips;
- ``torch``: ``torch.save`` pickles (open_clip ``.pt``/``.bin`` checkpoints, timm ``.pth``), optionally wrapped
  in ``{"state_dict": ...}`` / ``{"model": ...}`` and with DDP's ``module.`` prefix;
- ``safetensors``: open_clip / timm ``.safetensors``.

Nothing is ever downloaded. A file that does not fit the named architecture gets a ``WeightsError`` that names
the file, the architecture and the first mismatching keys.
"""

from __future__ import annotations

import hashlib
import json
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from clipvil.common.state_dict import diff_state_dicts

StateDict = dict[str, torch.Tensor]


class WeightsError(ValueError):
    """A weight file is missing, unreadable, or of another architecture than asked for."""


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file's bytes (recorded as provenance of extracted features)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def detect_format(path: Path) -> str:
    """'safetensors', 'openai-torchscript' or 'torch' from the file's bytes."""
    with open(path, "rb") as fh:
        head = fh.read(16)
    if len(head) >= 9 and head[8:9] == b"{" and not zipfile.is_zipfile(path):
        return "safetensors"  # 8-byte little-endian header length, then a JSON header
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as zf:
            if any(n.split("/", 1)[-1].startswith("code/") for n in zf.namelist()):
                return "openai-torchscript"
    return "torch"


def _unwrap(obj: object, path: Path) -> StateDict:
    """Finds the tensor mapping inside a checkpoint and strips DDP's 'module.' prefix."""
    for key in ("state_dict", "model", "module"):
        if isinstance(obj, Mapping) and key in obj and isinstance(obj[key], Mapping):
            obj = obj[key]
            break
    if not isinstance(obj, Mapping) or not obj:
        raise WeightsError(f"{path}: no state dict found (got {type(obj).__name__})")
    tensors = {str(k): v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if not tensors:
        raise WeightsError(f"{path}: the checkpoint holds no tensors")
    if all(k.startswith("module.") for k in tensors):
        tensors = {k[len("module."):]: v for k, v in tensors.items()}
    return tensors


@dataclass(frozen=True)
class WeightFile:
    """A weight file as read: its tensors, its format, and what the file says about how it was trained."""

    state: StateDict  # CPU tensors, DDP's 'module.' prefix removed
    format: str  # "openai-torchscript", "torch" or "safetensors"
    saved_name: str | None  # an open_clip trainer checkpoint's top-level "name" (model/run name), if any
    open_clip_config: dict[str, Any] | None  # open_clip_config.json beside the file (the hub layout), if any


def _sibling_config(path: Path) -> dict[str, Any] | None:
    cfg = path.with_name("open_clip_config.json")
    if not cfg.is_file():
        return None
    try:
        payload = json.loads(cfg.read_text())
    except (OSError, ValueError) as err:
        raise WeightsError(f"{cfg}: unreadable open_clip config beside the weights ({err})") from None
    return payload if isinstance(payload, dict) else None


def read_weights(path: str | Path) -> WeightFile:
    """Loads a weight file into a CPU state dict, with its format and training hints."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"{path}: weight file not found")
    fmt = detect_format(path)
    saved_name = None
    try:
        if fmt == "safetensors":
            from safetensors import safe_open
            from safetensors.torch import load_file

            state = load_file(str(path), device="cpu")
            with safe_open(str(path), framework="pt") as handle:  # open_clip / clipvil write the model name
                saved_name = (handle.metadata() or {}).get("name")
        elif fmt == "openai-torchscript":
            archive = torch.jit.load(str(path), map_location="cpu")
            state = {k: v for k, v in archive.state_dict().items()}
        else:
            obj = torch.load(path, map_location="cpu", weights_only=True)
            if isinstance(obj, Mapping) and isinstance(obj.get("name"), str):
                saved_name = obj["name"]
            state = _unwrap(obj, path)
    except WeightsError:
        raise
    except Exception as err:  # noqa: BLE001 — torch/safetensors raise many types for corrupt files
        raise WeightsError(f"{path}: cannot read weights as {fmt} ({type(err).__name__}: {err})") from None
    return WeightFile(state, fmt, saved_name, _sibling_config(path))


def select_prefix(state: StateDict, prefix: str) -> StateDict:
    """The entries under `prefix` (e.g. 'visual.'), with the prefix removed."""
    return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}


def check_compatible(model_state: Mapping[str, torch.Tensor], file_state: StateDict, path: Path, arch: str) -> None:
    """Raises WeightsError unless `file_state` has exactly the model's keys with the same shapes (the one
    state-dict comparison of clipvil.common.state_dict, and its one error format)."""
    problem = diff_state_dicts(model_state, file_state).describe(strict=True)
    if problem:
        raise WeightsError(f"{path}: these weights are not a {arch} checkpoint — {problem}")


def load_checked(module: torch.nn.Module, file_state: StateDict, path: Path, arch: str) -> None:
    """Checks then loads `file_state` into `module` (cast to each parameter's dtype), strictly."""
    model_state = module.state_dict()
    check_compatible(model_state, file_state, path, arch)
    module.load_state_dict({k: v.to(model_state[k].dtype) for k, v in file_state.items()}, strict=True)
