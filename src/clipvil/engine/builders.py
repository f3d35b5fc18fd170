"""Factories of a run's parts: the task module (model + loss), its DataLoaders, its batch layout."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset

from clipvil.engine.config import RunConfig
from clipvil.engine.registry import RunContext, get_task
from clipvil.engine.seed import seed_everything
from clipvil.engine.task import BatchLayout, ResumableSampler, TaskModule


def build_task(cfg: RunConfig, device: torch.device, rank: int = 0, world_size: int = 1) -> TaskModule:
    """The configured task module, made by its registered factory right after seeding every RNG with
    train.seed (so every rank builds the same initial weights), on `device`."""
    ctx = RunContext(out_dir=Path(cfg.out_dir), device=device, rank=rank, world_size=world_size)
    seed_everything(cfg.train.seed)
    task = get_task(cfg.task_name).factory(cfg.task, ctx)
    if not isinstance(task, TaskModule):
        raise TypeError(f"task {cfg.task_name!r}: the factory must return a TaskModule, got {type(task).__name__}")
    return task.to(device)


def batch_layout(cfg: RunConfig, rank: int, world_size: int) -> BatchLayout:
    """How this rank cuts the run's global batches."""
    t = cfg.train
    return BatchLayout(t.batch_size, t.grad_accum, rank, world_size, t.seed, t.shuffle)


def train_loader(task: TaskModule, dataset: Dataset, sampler: ResumableSampler, cfg: RunConfig,
                 device: torch.device) -> DataLoader:
    """The training DataLoader over the task's batch sampler (worker seeds from train.seed: the global RNG
    stays untouched)."""
    t = cfg.train
    return DataLoader(
        dataset,
        batch_sampler=sampler,
        collate_fn=task.collate,
        num_workers=t.num_workers,
        pin_memory=device.type == "cuda",
        persistent_workers=t.num_workers > 0,
        generator=torch.Generator().manual_seed(t.seed),
    )


def eval_loader(task: TaskModule, dataset: Dataset, cfg: RunConfig, device: torch.device) -> DataLoader:
    """An in-order DataLoader for evaluation (train.eval_batch_size, default the per-rank micro-batch)."""
    t = cfg.train
    return DataLoader(
        dataset,
        batch_size=t.eval_batch_size or t.batch_size // t.grad_accum,
        shuffle=False,
        collate_fn=task.collate,
        num_workers=t.num_workers,
        pin_memory=device.type == "cuda",
    )


def to_device(batch: dict[str, Any], device: torch.device) -> dict[str, Any]:
    """Moves every tensor-like value (anything with `.to`, e.g. GridFeatures) to `device`; lists of ids
    and other plain values stay as they are."""
    moved = {}
    for key, value in batch.items():
        if isinstance(value, torch.Tensor):
            value = value.to(device, non_blocking=True)  # from pinned memory: overlaps the copy
        elif hasattr(value, "to"):
            value = value.to(device)
        moved[key] = value
    return moved


def autocast(cfg: RunConfig, device: torch.device) -> Any:
    """The run's autocast context (train.amp) on `device`, or a no-op."""
    from contextlib import nullcontext

    if cfg.train.amp == "none":
        return nullcontext()
    dtype = torch.bfloat16 if cfg.train.amp == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)
