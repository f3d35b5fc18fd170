"""The package's own reference towers, loaded by short name wherever weights are taken.

    build_encoder("clip-vit-tiny")                       # architecture + weights by one name
    build_encoder("clipvil-vit-tiny", weights="clip-vit-tiny")
    clipvil extract --encoder clipvil-vit-tiny --weights clip-vit-tiny ...

Each tower is a safetensors file in fp16 under `clipvil/weights/` with a provenance file beside it
(`<name>.json`: the recipe, seed, steps, corpus spec and generator version, sha256 of the weight file, the
validation retrieval / accuracy and the first logged losses). They were trained by this package's recipes on
its own pre-training corpus (`clipvil make-corpus`; `bash scripts/train_towers.sh` reproduces them):

- `clip-rn-tiny`, `clip-vit-tiny`: CLIPs (image and text towers) trained contrastively (open_clip's ClipLoss);
- `imagenet-rn-tiny`, `imagenet-vit-tiny`: the same image towers trained as single-label object classifiers on
  the same images (the ImageNet analogue); image tower only (`visual.*`).

A name that is not shipped, or a shipped name whose file is missing, is an error that lists what is shipped.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SHIPPED_DIR = Path(__file__).resolve().parent.parent / "weights"
WEIGHTS_SUFFIX = ".safetensors"


@dataclass(frozen=True)
class ShippedTower:
    """One reference tower of the package."""

    name: str  # the short name (clip-vit-tiny, imagenet-rn-tiny, ...)
    architecture: str  # the open_clip model it is an instance of (clipvil-vit-tiny, ...)
    kind: str  # "clip" (image + text towers) | "imagenet" (image tower only)
    weights: Path  # the fp16 safetensors file
    provenance: dict[str, Any]  # the JSON beside it


def shipped_names() -> list[str]:
    """The short names of the towers shipped with this installation."""
    return sorted(p.stem for p in SHIPPED_DIR.glob("*.json") if p.with_suffix(WEIGHTS_SUFFIX).is_file())


def is_shipped_name(value: str | Path | None) -> bool:
    """True when `value` names a shipped tower (a bare name, not a path to an existing file)."""
    if value is None:
        return False
    text = str(value)
    return ("/" not in text and not text.endswith((".pt", ".bin", WEIGHTS_SUFFIX)) and not Path(text).exists()
            and text in shipped_names())


def shipped_tower(name: str) -> ShippedTower:
    """The shipped tower `name` (ValueError listing the shipped names otherwise)."""
    meta, weights = SHIPPED_DIR / f"{name}.json", SHIPPED_DIR / f"{name}{WEIGHTS_SUFFIX}"
    if not (meta.is_file() and weights.is_file()):
        raise ValueError(f"no shipped tower named {name!r}; shipped: {', '.join(shipped_names()) or '(none)'}")
    try:
        prov = json.loads(meta.read_text())
        return ShippedTower(name, str(prov["architecture"]), str(prov["kind"]), weights, prov)
    except (ValueError, KeyError, TypeError) as err:
        raise ValueError(f"{meta}: unreadable provenance of shipped tower {name!r} ({err})") from None


def resolve_weights(weights: str | Path | None) -> str | Path | None:
    """A shipped short name -> its weight file; anything else unchanged."""
    return shipped_tower(str(weights)).weights if is_shipped_name(weights) else weights


__all__ = ["SHIPPED_DIR", "ShippedTower", "is_shipped_name", "resolve_weights", "shipped_names", "shipped_tower"]
