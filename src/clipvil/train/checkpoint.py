"""Checkpoint files: atomic writes, safe loading, and model-state checks with clear errors.

A training checkpoint is one `torch.save`d dict (loadable with `weights_only=True`):

    format: "clipvil-train", version: 1
    model: state_dict of the unwrapped model
    optimizers / schedulers: {name: state_dict}   ("main" + extra optimizers)
    scaler: GradScaler state_dict or None
    step, epoch, step_in_epoch: updates done, and the data position of the next update
    best: {"metric", "value", "step"}; log_window: the partial log window
    rng: one `seed.capture_rng()` state per rank; world_size; config: the resolved config (plain data)

`restore_training_state` puts all of it back into freshly built objects when a run resumes.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path
from typing import Any

import torch
from torch import nn

from clipvil.train.seed import restore_rng

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


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return  # not every platform can open directories
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _replace_atomically(path: Path, write: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        write(tmp)
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)  # atomic on POSIX: readers see the old or the new file, never half of one
        _fsync_dir(path.parent)
    finally:
        tmp.unlink(missing_ok=True)


def save_checkpoint(state: dict[str, Any], path: str | Path) -> None:
    """Writes `state` to `path` via a temporary file + os.replace, so a crash never leaves a half file."""
    _replace_atomically(
        Path(path), lambda tmp: torch.save({"format": FORMAT, "version": VERSION, **state}, tmp)
    )


def copy_checkpoint(src: str | Path, dst: str | Path) -> None:
    """Atomically copies a checkpoint file (e.g. last.pt -> best.pt)."""
    _replace_atomically(Path(dst), lambda tmp: shutil.copyfile(src, tmp))


def remove_stale_temporaries(directory: str | Path) -> None:
    """Deletes temporary files left by a process killed while writing a checkpoint."""
    for tmp in Path(directory).glob(".*.tmp-*"):
        tmp.unlink(missing_ok=True)


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


def _listing(keys: list[str], limit: int = 10) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f", ... ({len(keys)} in all)" if len(keys) > limit else "")


def load_model_state(
    model: nn.Module, state: dict[str, torch.Tensor], source: str | Path, strict: bool = True
) -> tuple[list[str], list[str]]:
    """Loads `state` into `model`, raising CheckpointMismatchError (naming `source` and the keys) when
    shapes differ, or — with `strict` — when keys are missing or unexpected.

    Returns the (missing, unexpected) key lists (empty when strict)."""
    own = model.state_dict()
    missing = sorted(k for k in own if k not in state)
    unexpected = sorted(k for k in state if k not in own)
    mismatched = sorted(
        f"{k} (checkpoint {tuple(state[k].shape)} vs model {tuple(own[k].shape)})"
        for k in own
        if k in state and tuple(state[k].shape) != tuple(own[k].shape)
    )
    problems = []
    if mismatched:
        problems.append(f"shape mismatch: {_listing(mismatched)}")
    if strict and missing:
        problems.append(f"missing keys: {_listing(missing)}")
    if strict and unexpected:
        problems.append(f"unexpected keys: {_listing(unexpected)}")
    if problems:
        raise CheckpointMismatchError(
            f"{source}: checkpoint does not fit {type(model).__name__}: " + "; ".join(problems)
        )
    model.load_state_dict(state, strict=False)
    return missing, unexpected


def first_non_finite(model: nn.Module) -> str | None:
    """Name of the first parameter or buffer holding NaN/inf, or None when all are finite."""
    for name, tensor in model.state_dict().items():
        if tensor.is_floating_point() and not torch.isfinite(tensor).all():
            return name
    return None


def restore_training_state(
    path: str | Path,
    model: nn.Module,
    optimizers: dict[str, torch.optim.Optimizer],
    schedulers: dict[str, torch.optim.lr_scheduler.LRScheduler],
    scaler: torch.amp.GradScaler,
    rank: int,
    world_size: int,
    device: torch.device,
) -> dict[str, Any]:
    """Loads the full training state of `path` into freshly built objects and this rank's RNG streams;
    returns the saved loop counters (`train_state`). Mismatches raise CheckpointMismatchError."""
    state = load_checkpoint(path, map_location=device)
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
