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
import zipfile
from collections.abc import Mapping
from pathlib import Path

import torch

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


def read_state_dict(path: str | Path) -> tuple[StateDict, str]:
    """Loads a weight file into a CPU state dict; returns it with the detected format."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"{path}: weight file not found")
    fmt = detect_format(path)
    try:
        if fmt == "safetensors":
            from safetensors.torch import load_file

            return load_file(str(path), device="cpu"), fmt
        if fmt == "openai-torchscript":
            archive = torch.jit.load(str(path), map_location="cpu")
            state = {k: v for k, v in archive.state_dict().items()}
            return state, fmt
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except WeightsError:
        raise
    except Exception as err:  # torch/safetensors raise many types for corrupt files
        raise WeightsError(f"{path}: cannot read weights as {fmt} ({type(err).__name__}: {err})") from None
    return _unwrap(obj, path), fmt


def select_prefix(state: StateDict, prefix: str) -> StateDict:
    """The entries under `prefix` (e.g. 'visual.'), with the prefix removed."""
    return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}


def check_compatible(model_state: Mapping[str, torch.Tensor], file_state: StateDict, path: Path, arch: str) -> None:
    """Raises WeightsError unless `file_state` has exactly the model's keys with the same shapes."""
    missing = sorted(set(model_state) - set(file_state))
    unexpected = sorted(set(file_state) - set(model_state))
    mismatched = [
        f"{k}: file {tuple(file_state[k].shape)} vs model {tuple(model_state[k].shape)}"
        for k in sorted(set(model_state) & set(file_state))
        if tuple(model_state[k].shape) != tuple(file_state[k].shape)
    ]
    if not (missing or unexpected or mismatched):
        return
    parts = []
    for label, items in (("shape mismatches", mismatched), ("missing keys", missing), ("unexpected keys", unexpected)):
        if items:
            more = f" (+{len(items) - 3} more)" if len(items) > 3 else ""
            parts.append(f"{len(items)} {label}: {'; '.join(items[:3])}{more}")
    raise WeightsError(f"{path}: these weights are not a {arch} checkpoint — " + " | ".join(parts))


def load_checked(module: torch.nn.Module, file_state: StateDict, path: Path, arch: str) -> None:
    """Checks then loads `file_state` into `module` (cast to each parameter's dtype), strictly."""
    model_state = module.state_dict()
    check_compatible(model_state, file_state, path, arch)
    module.load_state_dict({k: v.to(model_state[k].dtype) for k, v in file_state.items()}, strict=True)
