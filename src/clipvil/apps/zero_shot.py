"""Evaluating a task whose model needs no training checkpoint: the zero-shot CLIP tasks (retrieval,
zeroshot_vqa) load their weights from `task.weights` (an OpenAI archive, an open_clip checkpoint, `clipvil
export-clip` output) when they are built.

    clipvil evaluate configs/retrieval/coco_karpathy_5k.yaml --weights ViT-B-32.pt

`train.evaluate.evaluate` needs a training checkpoint (it loads `state["model"]`); this is its twin without
one: the task is built (its factory reads `task.weights`) and evaluated as it is.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from clipvil.common.atomic import atomic_write_json
from clipvil.common.distributed import pick_device
from clipvil.engine.builders import build_task
from clipvil.engine.config import RunConfig, validate
from clipvil.engine.evaluate import run_evaluation

log = logging.getLogger(__name__)


def evaluate_weights(
    cfg: RunConfig, splits: str | list[str] | None = None, out_dir: str | Path | None = None
) -> dict[str, Any]:
    """Evaluates the freshly built task of `cfg` on `splits` (default train.eval_splits); results and
    metrics.json per split under `out_dir` (default <cfg.out_dir>/eval/<weights file stem>/). Returns the
    metrics of one split, or {split: metrics} for several."""
    validate(cfg)
    weights = getattr(cfg.task, "weights", None)
    if weights is None:
        log.warning("task %s: no task.weights given: evaluating RANDOM weights", cfg.task_name)
    names = [splits] if isinstance(splits, str) else list(splits or cfg.train.eval_splits)
    if not names:
        raise ValueError("no split to evaluate: pass --split or set train.eval_splits")
    device = pick_device(cfg.train.device)
    task = build_task(cfg, device)
    root = Path(out_dir) if out_dir else Path(cfg.out_dir) / "eval" / (Path(weights).stem if weights else "random")
    datasets = {name: task.dataset(name) for name in names}  # every split checked before any work
    results: dict[str, Any] = {}
    for name in names:
        where = root / name if len(names) > 1 or out_dir is None else root
        metrics = run_evaluation(task, datasets[name], name, cfg, device, where)
        atomic_write_json(where / "metrics.json", {"weights": str(weights) if weights else None, "split": name,
                                                   **metrics}, indent=2)
        results[name] = metrics
    return results[names[0]] if len(names) == 1 else results


__all__ = ["evaluate_weights"]
