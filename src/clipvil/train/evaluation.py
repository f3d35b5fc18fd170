"""Building a run's task and model, and evaluating a model: the periodic evaluation inside `train`
and the stand-alone `evaluate(cfg, checkpoint, split)`."""

from __future__ import annotations

import json
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from clipvil.tasks.base import Batch, Task
from clipvil.tasks.registry import RunContext, get_task
from clipvil.train import checkpoint as ckpt
from clipvil.train.config import RunConfig, validate
from clipvil.train.distributed import pick_device
from clipvil.train.seed import seed_everything


def to_device(batch: Batch, device: torch.device) -> Batch:
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
    if cfg.train.amp == "none":
        return nullcontext()
    dtype = torch.bfloat16 if cfg.train.amp == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)


def build_task(cfg: RunConfig, device: torch.device, rank: int = 0, world_size: int = 1) -> Task:
    """The configured task, made by its registered factory."""
    ctx = RunContext(out_dir=Path(cfg.out_dir), device=device, rank=rank, world_size=world_size)
    return get_task(cfg.task_name).factory(cfg.task, ctx)


def build_model(task: Task, seed: int, device: torch.device) -> nn.Module:
    """task.build_model() right after seeding every RNG with `seed` (so all ranks start alike)."""
    seed_everything(seed)  # every rank builds the same initial weights
    return task.build_model().to(device)


def run_evaluation(
    task: Task, model: nn.Module, dataset: Dataset, cfg: RunConfig, device: torch.device, out_dir: Path | None
) -> dict[str, Any]:
    """task.evaluate over a dataset in order (no grad, eval mode, the run's autocast)."""
    batch_size = cfg.train.eval_batch_size or cfg.train.batch_size // cfg.train.grad_accum
    loader = DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=False,
        collate_fn=task.collate,
        num_workers=cfg.train.num_workers,
        pin_memory=device.type == "cuda",
    )
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), autocast(cfg, device):
            metrics = task.evaluate(model, (to_device(b, device) for b in loader), out_dir)
    finally:
        model.train(was_training)
    if task.primary_metric not in metrics:
        raise KeyError(
            f"task {cfg.task_name!r}: evaluate() returned no primary metric "
            f"{task.primary_metric!r} (got {sorted(metrics)})"
        )
    return metrics


def evaluate(
    cfg: RunConfig, checkpoint: str | Path, split: str | None = None, out_dir: str | Path | None = None
) -> dict[str, Any]:
    """Evaluates a checkpoint's model on `split` (default: train.eval_split) in this process.

    The task writes its results file into `out_dir` (default <cfg.out_dir>/eval/<split>-<checkpoint
    name>/), next to metrics.json. Raises CheckpointMismatchError if the weights do not fit the model."""
    validate(cfg)
    device = pick_device(cfg.train.device)
    split = split or cfg.train.eval_split
    if not split:
        raise ValueError("no split to evaluate: pass `split` or set train.eval_split")
    results = Path(out_dir) if out_dir else Path(cfg.out_dir) / "eval" / f"{split}-{Path(checkpoint).stem}"
    task = build_task(cfg, device)
    model = build_model(task, cfg.train.seed, device)
    ckpt.load_model_state(model, ckpt.load_checkpoint(checkpoint, map_location=device)["model"], checkpoint)
    metrics = run_evaluation(task, model, task.dataset(split), cfg, device, results)
    results.mkdir(parents=True, exist_ok=True)
    record = {"checkpoint": str(checkpoint), "split": split, **metrics}
    (results / "metrics.json").write_text(json.dumps(record, indent=2, default=lambda v: v.item()) + "\n")
    return metrics
