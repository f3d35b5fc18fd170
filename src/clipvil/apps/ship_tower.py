"""`clipvil ship-tower`: a finished clip / classify run on the corpus -> a reference tower of the package.

Writes `<out>/<name>.safetensors` (fp16) and `<out>/<name>.json` (provenance). A clip run ships the whole CLIP
(image and text towers: zero-shot VQA and retrieval need the text side); a classify run ships its image tower
(`visual.*`), the head dropped. To keep the repository lean, token-embedding rows of BPE tokens that occur in
no corpus caption are stored as zeros: they never received a gradient (their trained values are the random
initialisation shrunk by weight decay), and zero rows compress to nothing in git and in the wheel. The
provenance says how many rows that is.
"""

from __future__ import annotations

import json
import platform
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import open_clip
import torch

import clipvil
from clipvil.common.atomic import atomic_write, atomic_write_json
from clipvil.data.shards import expand_shards
from clipvil.encoders.weights import sha256_file
from clipvil.engine.checkpoint import load_checkpoint


@dataclass(frozen=True)
class ShipResult:
    weights: Path
    provenance: Path
    record: dict[str, Any]


def corpus_token_ids(corpus: Path, pattern: str, model: str = "clipvil-vit-tiny", context_length: int = 77) -> set[int]:
    """Every token id `model`'s tokenizer gives the captions of the shards `corpus`/`pattern` (start/end
    tokens included)."""
    tokenizer = open_clip.get_tokenizer(model)
    seen: set[int] = set()
    batch: list[str] = []
    for shard in expand_shards(str(corpus / pattern)):
        with tarfile.open(shard) as tar:
            for member in tar:
                if member.name.endswith(".txt"):
                    batch.append(tar.extractfile(member).read().decode("utf-8"))  # type: ignore[union-attr]
        seen.update(int(t) for t in tokenizer(batch, context_length=context_length).unique().tolist())
        batch = []
    return seen


def _first_losses(run_dir: Path, n: int = 5) -> list[dict[str, float]]:
    log = run_dir / "logs" / "train.jsonl"
    out: list[dict[str, float]] = []
    if log.is_file():
        for line in log.read_text().splitlines():
            rec = json.loads(line)
            if rec.get("phase") == "train" and "loss" in rec:
                out.append({"step": int(rec["step"]), "loss": round(float(rec["loss"]), 4)})
            if len(out) == n:
                break
    return out


def _corpus_record(corpus: Path) -> dict[str, Any]:
    manifest = corpus / "corpus.json"
    data = json.loads(manifest.read_text())
    return {"spec": data["spec"], "splits": data["splits"], "held_out": data["held_out"],
            "classes": data["classes"], "caption_styles": data["caption_styles"],
            "shards_sha256": data["shards_sha256"]}


def ship_tower(checkpoint: Path, name: str, recipe: str, corpus: Path, out: Path) -> ShipResult:
    """Writes the reference tower `name` from a clip / classify `checkpoint` (see the module doc)."""
    state = load_checkpoint(checkpoint)
    cfg = state["config"]
    task = cfg["task"]
    if task["name"] == "clip":
        kind, weights = "clip", dict(state["model"])  # the open_clip CLIP's own keys
        used = corpus_token_ids(corpus, task["data"]["splits"]["train"], task["model"])
        table = weights["token_embedding.weight"].clone()  # [V, D]
        unused = torch.ones(table.shape[0], dtype=torch.bool)  # [V]
        unused[sorted(used)] = False
        table[unused] = 0
        weights["token_embedding.weight"] = table
        zeroed = int(unused.sum())
    elif task["name"] == "classify" and not task.get("timm_model"):
        kind, zeroed = "imagenet", 0
        weights = {k: v for k, v in state["model"].items() if k.startswith("visual.")}  # the head dropped
    else:
        raise ValueError(f"{checkpoint}: ship-tower takes clip runs and classify runs on an open_clip tower, "
                         f"not a {task['name']!r} run")
    if not any(k.startswith("visual.") for k in weights):
        raise ValueError(f"{checkpoint}: no image-tower weights (visual.*) found in the checkpoint")
    half = {k: v.detach().to(torch.float16).contiguous() if v.is_floating_point() else v.contiguous()
            for k, v in weights.items()}
    out.mkdir(parents=True, exist_ok=True)
    target = out / f"{name}.safetensors"
    from safetensors.torch import save_file

    atomic_write(target, lambda tmp: save_file(half, str(tmp), metadata={"name": task["model"], "kind": kind}))
    target.chmod(0o644)  # package data: readable by every user of an installation
    train_state = state["train_state"]
    record = {
        "name": name, "architecture": task["model"], "kind": kind, "dtype": "float16", "format": "safetensors",
        "sha256": sha256_file(target), "recipe": recipe, "seed": int(cfg["train"]["seed"]),
        "steps": int(train_state["step"]), "epochs": cfg["train"]["epochs"], "batch_size": cfg["train"]["batch_size"],
        "optim": cfg["optim"], "schedule": cfg["schedule"],
        "labels": ("contrastive captions" if kind == "clip" else "single-label object category (12 classes)"),
        "val": train_state.get("last_eval", {}).get("val", {}),
        "first_losses": _first_losses(checkpoint.parent.parent),
        "zeroed_token_rows": zeroed, "corpus": _corpus_record(corpus),
        "versions": {"clipvil": clipvil.__version__, "torch": torch.__version__.split("+")[0],
                     "open_clip": open_clip.__version__, "python": platform.python_version()},
    }
    prov = out / f"{name}.json"
    atomic_write_json(prov, record, indent=1)
    return ShipResult(target, prov, record)


__all__ = ["ShipResult", "corpus_token_ids", "ship_tower"]
