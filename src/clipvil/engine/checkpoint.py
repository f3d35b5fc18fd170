"""Checkpoint files: atomic writes, safe loading, and model-state checks with clear errors.

A training checkpoint is one `torch.save`d dict (loadable with `weights_only=True`):

    format: "clipvil-train", version: 1
    model: state_dict of the task's model (task.model: every trainable weight)
    artifacts: what predict/evaluate need beside the weights (task.artifacts(): vocabularies, provenance)
    optimizers / schedulers: {name: state_dict}   ("main" + extra optimizers)
    scaler: GradScaler state_dict or None
    train_state: the loop's counters (updates done, epoch and position of the next update, phase, best
    value and step, the latest evaluations per split, the open log window)
    rng: one `seed.capture_rng()` state per rank; world_size; config: the resolved config (plain data,
    absolute paths: a copied checkpoint still knows its data)

`restore_training_state` puts all of it back into freshly built objects when a run resumes.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any

import torch
from torch import nn

from clipvil.common.atomic import atomic_write, remove_temporaries
from clipvil.common.state_dict import diff_state_dicts
from clipvil.engine.seed import restore_rng

log = logging.getLogger(__name__)

FORMAT = "clipvil-train"
VERSION = 1


class CheckpointMismatchError(RuntimeError):
    """A checkpoint's tensors do not fit the model (another architecture or configuration)."""


def last_path(out_dir: str | Path) -> Path:
    """Where the latest full training state of a run is kept."""
    return Path(out_dir) / "checkpoints" / "last.pt"


def best_path(out_dir: str | Path) -> Path:
    """Where the state with the best evaluation score is kept."""
    return Path(out_dir) / "checkpoints" / "best.pt"


def save_checkpoint(state: dict[str, Any], path: str | Path) -> None:
    """Writes `state` to `path` atomically and durably (temporary file, fsync, rename, directory fsync)."""
    atomic_write(Path(path), lambda tmp: torch.save({"format": FORMAT, "version": VERSION, **state}, tmp))


def copy_checkpoint(src: str | Path, dst: str | Path) -> None:
    """Atomically copies a checkpoint file (e.g. last.pt -> best.pt)."""
    atomic_write(Path(dst), lambda tmp: shutil.copyfile(src, tmp))


def remove_stale_temporaries(directory: str | Path) -> None:
    """Deletes temporary files left by a process killed while writing a checkpoint."""
    remove_temporaries(directory)


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Loads a checkpoint written by `save_checkpoint` (tensors only, no arbitrary pickles)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # torch raises several types for truncated or foreign files
        raise RuntimeError(f"{path}: cannot read checkpoint: {err}") from err
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise RuntimeError(f"{path}: not a clipvil training checkpoint (no format={FORMAT!r} marker)")
    if state.get("version") != VERSION:
        raise RuntimeError(f"{path}: checkpoint version {state.get('version')} is not supported ({VERSION})")
    return state


def load_model_state(
    model: nn.Module, state: dict[str, torch.Tensor], source: str | Path, strict: bool = True
) -> tuple[list[str], list[str]]:
    """Loads `state` into `model`, raising CheckpointMismatchError (naming `source` and the keys) when
    shapes differ, or — with `strict` — when keys are missing or unexpected.

    Returns the (missing, unexpected) key lists."""
    diff = diff_state_dicts(model.state_dict(), state)
    problem = diff.describe(strict)
    if problem:
        raise CheckpointMismatchError(f"{source}: checkpoint does not fit {type(model).__name__}: {problem}")
    model.load_state_dict(state, strict=False)
    return diff.missing, diff.unexpected


def first_non_finite(model: nn.Module) -> str | None:
    """Name of the first parameter or buffer holding NaN/inf, or None when all are finite."""
    for name, tensor in model.state_dict().items():
        if tensor.is_floating_point() and not torch.isfinite(tensor).all():
            return name
    return None


def restore_training_state(
    path: str | Path,
    state: dict[str, Any],
    model: nn.Module,
    optimizers: dict[str, torch.optim.Optimizer],
    schedulers: dict[str, torch.optim.lr_scheduler.LRScheduler],
    scaler: torch.amp.GradScaler,
    rank: int,
    world_size: int,
    device: torch.device,
) -> dict[str, Any]:
    """Loads the full training state of `path` into freshly built objects and this rank's RNG streams;
    returns the saved loop counters (`train_state`). `state` is `load_checkpoint(path)`. Mismatches raise
    CheckpointMismatchError."""
    load_model_state(model, state["model"], path)
    if set(state["optimizers"]) != set(optimizers):
        raise CheckpointMismatchError(
            f"{path}: checkpoint has optimizers {sorted(state['optimizers'])}, the config {sorted(optimizers)}"
        )
    for name, optimizer in optimizers.items():
        try:
            optimizer.load_state_dict(state["optimizers"][name])
        except ValueError as err:
            raise CheckpointMismatchError(f"{path}: optimizer {name!r} does not fit: {err}") from err
        schedulers[name].load_state_dict(state["schedulers"][name])
    if state["scaler"] and scaler.is_enabled():  # amp switched on or off between runs: start the scale anew
        scaler.load_state_dict(state["scaler"])
    if state["world_size"] == world_size:
        restore_rng(state["rng"][rank])
    else:
        log.warning(
            "%s: written by %d ranks, resumed on %d: RNG streams restart from the seed",
            path,
            state["world_size"],
            world_size,
        )
    return state["train_state"]
