"""Evaluating a task's model on named splits: the periodic evaluation inside `train` and the stand-alone
`evaluate(cfg, checkpoint, splits)` behind `clipvil evaluate`."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset

from clipvil.common.atomic import atomic_write_json
from clipvil.common.distributed import pick_device
from clipvil.engine import checkpoint as ckpt
from clipvil.engine.builders import autocast, build_task, eval_loader, to_device
from clipvil.engine.config import RunConfig, validate
from clipvil.engine.task import TaskModule


def run_evaluation(
    task: TaskModule, dataset: Dataset, split: str, cfg: RunConfig, device: torch.device, out_dir: Path | None
) -> dict[str, Any]:
    """task.evaluate over `dataset` of `split` in order (no grad, eval mode, the run's autocast)."""
    loader = eval_loader(task, dataset, cfg, device)
    was_training = task.training
    task.eval()
    try:
        with torch.no_grad(), autocast(cfg, device):
            metrics = task.evaluate((to_device(b, device) for b in loader), split, out_dir)
    finally:
        task.train(was_training)
    if task.primary_metric not in metrics:
        raise KeyError(
            f"task {cfg.task_name!r}: evaluate() returned no primary metric "
            f"{task.primary_metric!r} on split {split!r} (got {sorted(metrics)})"
        )
    return {k: (v.item() if hasattr(v, "item") else v) for k, v in metrics.items()}  # plain data


def improves(value: float, best: float | None, higher_is_better: bool) -> bool:
    """Whether `value` beats `best` in the metric's direction (NaN never does)."""
    if math.isnan(value):
        return False
    if best is None or math.isnan(best):
        return True
    return value > best if higher_is_better else value < best


def evaluate(
    cfg: RunConfig,
    checkpoint: str | Path,
    splits: str | list[str] | None = None,
    out_dir: str | Path | None = None,
) -> dict[str, Any]:
    """Evaluates a checkpoint's model on `splits` (default: train.eval_splits) in this process.

    For each split the task writes its results file into <out_dir>/<split>/ (default out_dir:
    <cfg.out_dir>/eval/<checkpoint name>/), next to metrics.json. One split returns its metrics; several
    return {split: metrics}. Raises CheckpointMismatchError if the weights do not fit the model."""
    validate(cfg)
    device = pick_device(cfg.train.device)
    names = [splits] if isinstance(splits, str) else list(splits or cfg.train.eval_splits)
    if not names:
        raise ValueError("no split to evaluate: pass --split or set train.eval_splits")
    root = Path(out_dir) if out_dir else Path(cfg.out_dir) / "eval" / Path(checkpoint).stem
    task = build_task(cfg, device)
    state = ckpt.load_checkpoint(checkpoint, map_location=device)
    ckpt.load_model_state(task.model, state["model"], checkpoint)
    datasets = {name: task.dataset(name) for name in names}  # every split checked before any work
    results: dict[str, Any] = {}
    for name in names:
        where = root / name if len(names) > 1 or out_dir is None else root
        metrics = run_evaluation(task, datasets[name], name, cfg, device, where)
        atomic_write_json(where / "metrics.json", {"checkpoint": str(checkpoint), "split": name, **metrics},
                          indent=2)
        results[name] = metrics
    return results[names[0]] if isinstance(splits, str) or len(names) == 1 else results
