"""One optimizer update over a rank's micro-batches: the engine's core building block."""

from __future__ import annotations

import math
import re
import warnings
from contextlib import nullcontext
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from clipvil.common.distributed import all_gather_object, all_reduce_mean
from clipvil.engine import checkpoint as ckpt
from clipvil.engine.builders import autocast, to_device
from clipvil.engine.task import Batch, Progress

if TYPE_CHECKING:
    from clipvil.engine.loop import Run


class NonFiniteLossError(FloatingPointError):
    """The loss (or the weights) became NaN/inf; the last checkpoint on disk is the last good state."""


def update(run: Run, micro_batches: list[Batch], progress: Progress) -> dict[str, float]:
    """Forward/backward of every micro-batch through the (DDP-wrapped) task, then a step of the optimizers
    in `progress.stepping`; the others' gradients are dropped. Returns the global mean loss and logs."""
    cfg, dist, accum = run.cfg, run.dist, len(micro_batches)
    losses, extras_sum, ids = [], {}, []
    for i, batch in enumerate(micro_batches):
        batch = to_device(batch, dist.device)
        sync = i == accum - 1 or not dist.enabled
        with nullcontext() if sync else run.wrapped.no_sync():  # type: ignore[operator]
            with autocast(cfg, dist.device):
                loss, extras = run.wrapped(batch)
            run.scaler.scale(loss / accum).backward()
        losses.append(loss.detach().float())
        ids.append(batch.get("ids"))
        for key, value in extras.items():
            extras_sum[key] = extras_sum.get(key, 0.0) + float(value)
    keys = sorted(extras_sum)
    extras_mean = torch.tensor([extras_sum[k] / accum for k in keys], device=dist.device)  # [K]
    local = torch.cat([torch.stack(losses).mean().reshape(1), extras_mean])  # [1 + K]
    reduced = all_reduce_mean(local, dist).tolist()  # [1 + K]
    stats = {"loss": reduced[0], **dict(zip(keys, reduced[1:]))}
    if not math.isfinite(reduced[0]):
        _raise_non_finite(run, reduced[0], [(float(v), b) for v, b in zip(losses, ids)])
    _step_optimizers(run, progress, stats)
    return stats


def _step_optimizers(run: Run, progress: Progress, stats: dict[str, float]) -> None:
    stepping = [(n, o) for n, o in run.optimizers.items() if n in progress.stepping]
    stats["lr"] = run.optimizers["main"].param_groups[0]["lr"]
    for name, optimizer in stepping:
        run.scaler.unscale_(optimizer)
        if name != "main":
            stats[f"lr/{name}"] = optimizer.param_groups[0]["lr"]
    if run.cfg.train.clip_grad_norm > 0 and stepping:
        params = [p for _, o in stepping for g in o.param_groups for p in g["params"]]
        stats["grad_norm"] = float(nn.utils.clip_grad_norm_(params, run.cfg.train.clip_grad_norm))
    for _, optimizer in stepping:
        run.scaler.step(optimizer)
    if stepping:
        run.scaler.update()
    with warnings.catch_warnings():  # schedules count updates, also those the fp16 GradScaler skipped
        warnings.filterwarnings("ignore", message=re.escape("Detected call of `lr_scheduler.step()`"))
        for name, optimizer in run.optimizers.items():
            if name in progress.stepping:
                run.schedulers[name].step()
            optimizer.zero_grad(set_to_none=True)


def _raise_non_finite(run: Run, loss: float, local: list[tuple[float, Any]]) -> None:
    bad = [
        ids if ids is not None else f"micro-batch {i} (no 'ids' key)"
        for i, (value, ids) in enumerate(local)
        if not math.isfinite(value)
    ]
    per_rank = all_gather_object(bad, run.dist)
    where = "; ".join(f"rank {r}: {b}" for r, b in enumerate(per_rank) if b) or "no single micro-batch"
    last = ckpt.last_path(run.cfg.out_dir)
    kept = f"last good checkpoint: {last}" if last.is_file() else "no checkpoint was written yet"
    raise NonFiniteLossError(
        f"non-finite loss {loss} at update {run.state.step + 1} (epoch {run.state.epoch}, phase "
        f"{run.state.phase}); batch ids with a non-finite loss: {where}; {kept}"
    )
