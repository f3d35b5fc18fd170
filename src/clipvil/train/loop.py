"""The training loop: one readable recipe driving any registered Task.

    train(cfg) -> RunResult        (auto-resumes from <out_dir>/checkpoints/last.pt)

Each update: `grad_accum` micro-batches per rank (autocast, loss / grad_accum, backward; DDP syncs the
gradients on the last one), the loss averaged over ranks and checked for NaN/inf, gradients unscaled
(fp16) and clipped, every optimizer and schedule stepped. Then, on their schedules: a log record, an
evaluation on rank 0 (RNG streams untouched), and a checkpoint with the full training state.
"""

from __future__ import annotations

import logging
import math
import re
import time
import warnings
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import yaml
from torch import nn
from torch.utils.data import DataLoader, Dataset

from clipvil.tasks.base import Batch, Task
from clipvil.train import checkpoint as ckpt
from clipvil.train.config import RunConfig, config_to_dict, save_config, validate
from clipvil.train.distributed import (
    DistInfo,
    all_gather_object,
    all_reduce_mean,
    broadcast_object,
    init_distributed,
    shutdown,
    wrap_model,
)
from clipvil.train.evaluation import autocast, build_model, build_task, run_evaluation, to_device
from clipvil.train.logs import RunLogger
from clipvil.train.optim import MAIN, build_optimizers
from clipvil.train.sampler import ResumableBatchSampler
from clipvil.train.seed import capture_rng, preserved_rng, seed_everything

log = logging.getLogger(__name__)


class NonFiniteLossError(FloatingPointError):
    """The loss (or the weights) became NaN/inf; the last checkpoint on disk is the last good state."""


@dataclass
class TrainState:
    """Counters saved in every checkpoint."""

    step: int = 0  # updates done
    epoch: int = 0  # epoch of the next update
    step_in_epoch: int = 0  # updates done within `epoch`
    best_value: float | None = None  # best task.primary_metric so far
    best_step: int | None = None  # the update count at which it was reached
    last_eval: dict[str, Any] = field(default_factory=dict)  # metrics of the latest evaluation
    window: dict[str, float] = field(default_factory=dict)  # sums over the open log window (+ 'steps')


@dataclass
class RunResult:
    """What `train` returns (complete on rank 0; other ranks know no evaluation results)."""

    out_dir: Path  # the run directory
    step: int  # updates done
    epoch: int  # epochs completed
    last_loss: float | None  # training loss of the last log record written by this call
    best_value: float | None  # best primary metric
    best_step: int | None  # where it was reached
    last_eval: dict[str, Any]  # metrics of the last evaluation
    last_checkpoint: Path  # <out_dir>/checkpoints/last.pt
    best_checkpoint: Path | None  # <out_dir>/checkpoints/best.pt, if an evaluation ran


@dataclass
class _Run:
    """Everything one training run holds; built once by `_setup`."""

    cfg: RunConfig
    dist: DistInfo
    task: Task
    model: nn.Module  # the bare model (checkpoints, evaluation)
    wrapped: nn.Module  # what the task's loss() calls: DDP(model) in a distributed run
    optimizers: dict[str, torch.optim.Optimizer]
    schedulers: dict[str, torch.optim.lr_scheduler.LRScheduler]
    scaler: torch.amp.GradScaler
    sampler: ResumableBatchSampler
    loader: DataLoader
    logger: RunLogger
    total_steps: int
    state: TrainState = field(default_factory=TrainState)
    eval_set: Dataset | None = None
    window_start: float = field(default_factory=time.perf_counter)
    last_loss: float | None = None


def _setup(cfg: RunConfig, dist: DistInfo) -> _Run:
    out_dir, t = Path(cfg.out_dir), cfg.train
    if dist.is_main:
        _save_config_noting_changes(cfg, out_dir / "config.yaml")
        ckpt.remove_stale_temporaries(out_dir / "checkpoints")
    task = build_task(cfg, dist.device, dist.rank, dist.world_size)
    model = build_model(task, t.seed, dist.device)
    train_set = task.dataset(t.train_split)
    sampler = ResumableBatchSampler(
        len(train_set), t.batch_size, t.grad_accum, dist.rank, dist.world_size, t.seed, t.shuffle
    )
    spe = sampler.steps_per_epoch
    total = min(s for s in (t.max_steps, t.epochs * spe) if s > 0)
    optimizers, schedulers = build_optimizers(model, cfg, spe, total)
    scaler = torch.amp.GradScaler(dist.device.type, enabled=t.amp == "fp16")
    seed_everything(t.seed + 1 + dist.rank)  # each rank's own stream (dropout, augmentation)
    state = _resume_or_init(cfg, dist, model, optimizers, schedulers, scaler)
    evaluates = t.eval_split and (t.eval_every or t.eval_each_epoch or t.eval_at_end)
    eval_set = task.dataset(t.eval_split) if dist.is_main and evaluates else None  # fail early on a bad split
    loader = DataLoader(
        train_set,
        batch_sampler=sampler,
        collate_fn=task.collate,
        num_workers=t.num_workers,
        pin_memory=dist.device.type == "cuda",
        persistent_workers=t.num_workers > 0,
        generator=torch.Generator().manual_seed(t.seed),  # worker seeds: the global RNG stays untouched
    )
    wrapped = wrap_model(model, dist, t.find_unused_parameters)
    logger = RunLogger(out_dir, dist.is_main, state.step, total, t.tensorboard, t.progress)
    return _Run(
        cfg,
        dist,
        task,
        model,
        wrapped,
        optimizers,
        schedulers,
        scaler,
        sampler,
        loader,
        logger,
        total,
        state,
        eval_set,
    )


def _resume_or_init(
    cfg: RunConfig,
    dist: DistInfo,
    model: nn.Module,
    optimizers: dict,
    schedulers: dict,
    scaler: torch.amp.GradScaler,
) -> TrainState:
    """The state of <out_dir>/checkpoints/last.pt if it exists, else a fresh one (with `init_from` weights)."""
    state, last, t = TrainState(), ckpt.last_path(cfg.out_dir), cfg.train
    if last.is_file():
        saved = ckpt.restore_training_state(
            last, model, optimizers, schedulers, scaler, dist.rank, dist.world_size, dist.device
        )
        state = TrainState(**saved)
        log.info("resuming %s at step %d", last, state.step)
    elif t.init_from:
        source = ckpt.load_checkpoint(t.init_from, map_location=dist.device)
        missing, unexpected = ckpt.load_model_state(model, source["model"], t.init_from, strict=t.init_strict)
        log.info("initialised from %s (missing %s, unexpected %s)", t.init_from, missing, unexpected)
    steps = all_gather_object(state.step, dist)
    if len(set(steps)) > 1:
        raise RuntimeError(
            f"ranks resume from different steps {steps}: every node must see the same {last} "
            "(put out_dir on a shared filesystem)"
        )
    return state


def _save_config_noting_changes(cfg: RunConfig, path: Path) -> None:
    new = config_to_dict(cfg)
    if path.is_file():
        old = yaml.safe_load(path.read_text()) or {}
        changed = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
        if changed:
            log.warning("%s: config sections changed since the last start: %s", path, ", ".join(changed))
    save_config(cfg, path)


def _update(run: _Run, micro_batches: list[Batch]) -> dict[str, float]:
    """One optimizer update over this rank's micro-batches; returns the global mean loss and scalars."""
    cfg, dist, accum = run.cfg, run.dist, len(micro_batches)
    losses, extras_sum, ids = [], {}, []
    for i, batch in enumerate(micro_batches):
        batch = to_device(batch, dist.device)
        sync = i == accum - 1 or not dist.enabled
        with nullcontext() if sync else run.wrapped.no_sync():  # type: ignore[operator]
            with autocast(cfg, dist.device):
                loss, extras = run.task.loss(run.wrapped, batch)
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
        _raise_non_finite(run, reduced[0], [(float(l), b) for l, b in zip(losses, ids)])
    stats["lr"] = run.optimizers[MAIN].param_groups[0]["lr"]
    for name, optimizer in run.optimizers.items():
        run.scaler.unscale_(optimizer)
        if name != MAIN:
            stats[f"lr/{name}"] = optimizer.param_groups[0]["lr"]
    if cfg.train.clip_grad_norm > 0:
        params = [p for o in run.optimizers.values() for g in o.param_groups for p in g["params"]]
        stats["grad_norm"] = float(nn.utils.clip_grad_norm_(params, cfg.train.clip_grad_norm))
    for optimizer in run.optimizers.values():
        run.scaler.step(optimizer)
    run.scaler.update()
    with warnings.catch_warnings():  # schedules count updates, also those the fp16 GradScaler skipped
        warnings.filterwarnings("ignore", message=re.escape("Detected call of `lr_scheduler.step()`"))
        for name, optimizer in run.optimizers.items():
            run.schedulers[name].step()
            optimizer.zero_grad(set_to_none=True)
    return stats


def _raise_non_finite(run: _Run, loss: float, local: list[tuple[float, Any]]) -> None:
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
        f"non-finite loss {loss} at update {run.state.step + 1} (epoch {run.state.epoch}); batch ids with a "
        f"non-finite loss: {where}; {kept}"
    )


def _after_update(run: _Run, stats: dict[str, float]) -> None:
    """Logging, evaluation and checkpointing due after an update."""
    t, state = run.cfg.train, run.state
    for key, value in stats.items():
        state.window[key] = state.window.get(key, 0.0) + value
    state.window["steps"] = state.window.get("steps", 0.0) + 1
    run.logger.advance()
    last, epoch_end = state.step == run.total_steps, state.step_in_epoch == 0
    if state.step % t.log_every == 0 or last:
        _log_window(run, stats)
    improved = False
    if t.eval_split and (
        (t.eval_every and state.step % t.eval_every == 0)
        or (t.eval_each_epoch and epoch_end)
        or (t.eval_at_end and last)
    ):
        improved = broadcast_object(_evaluate_now(run), run.dist)
    if improved or state.step % t.checkpoint_every == 0 or epoch_end or last:
        _save(run, best=improved)


def _log_window(run: _Run, stats: dict[str, float]) -> None:
    state, now = run.state, time.perf_counter()
    steps = state.window.pop("steps")
    record: dict[str, Any] = {"step": state.step, "epoch": state.step / run.sampler.steps_per_epoch}
    for key, total in state.window.items():
        record[key] = total / steps
    record["lr"] = stats["lr"]  # the latest update's rates, not window means
    record.update({k: v for k, v in stats.items() if k.startswith("lr/")})
    record["samples_per_sec"] = steps * run.cfg.train.batch_size / max(now - run.window_start, 1e-9)
    if state.step % run.cfg.train.log_every:  # the run ends inside a window: log it, but keep it open
        record["partial"] = True  # so that a continued run (max_steps raised) logs the full window
        state.window["steps"] = steps
    else:
        state.window, run.window_start = {}, now
    run.logger.log_train(record)
    run.last_loss = record["loss"]


def _evaluate_now(run: _Run) -> bool:
    """Evaluates on rank 0; True when the primary metric improved (then best.pt gets this state)."""
    if not run.dist.is_main:
        return False
    cfg, state = run.cfg, run.state
    if run.eval_set is None:  # built in _setup; None only if evaluation was switched off there
        run.eval_set = run.task.dataset(cfg.train.eval_split)
    out = Path(cfg.out_dir) / "eval" / f"step{state.step:07d}" if cfg.train.save_predictions else None
    with preserved_rng():  # evaluation must not shift the training RNG streams
        metrics = run_evaluation(run.task, run.model, run.eval_set, cfg, run.dist.device, out)
    state.last_eval = {k: (v.item() if hasattr(v, "item") else v) for k, v in metrics.items()}  # plain data
    run.logger.log_eval(
        {
            "step": state.step,
            "epoch": state.step / run.sampler.steps_per_epoch,
            "split": cfg.train.eval_split,
            **metrics,
        }
    )
    value = float(metrics[run.task.primary_metric])
    if state.best_value is None or value > state.best_value:
        state.best_value, state.best_step = value, state.step
        return True
    return False


def _save(run: _Run, best: bool) -> None:
    """Writes last.pt (and best.pt): every rank contributes its RNG state; rank 0 writes."""
    bad = ckpt.first_non_finite(run.model)  # identical weights on every rank: all stop together
    if bad is not None:
        raise NonFiniteLossError(
            f"{bad} is not finite after update {run.state.step}; refusing to write a "
            f"checkpoint (the last good one stays at {ckpt.last_path(run.cfg.out_dir)})"
        )
    rng = all_gather_object(capture_rng(), run.dist)
    if not run.dist.is_main:
        return
    last = ckpt.last_path(run.cfg.out_dir)
    ckpt.save_checkpoint(
        {
            "model": run.model.state_dict(),
            "optimizers": {n: o.state_dict() for n, o in run.optimizers.items()},
            "schedulers": {n: s.state_dict() for n, s in run.schedulers.items()},
            "scaler": run.scaler.state_dict() if run.scaler.is_enabled() else None,
            "train_state": vars(run.state).copy(),
            "rng": rng,
            "world_size": run.dist.world_size,
            "config": config_to_dict(run.cfg),
        },
        last,
    )
    if best:
        ckpt.copy_checkpoint(last, ckpt.best_path(run.cfg.out_dir))


def _train(run: _Run) -> None:
    accum, state, spe = run.cfg.train.grad_accum, run.state, run.sampler.steps_per_epoch
    while state.step < run.total_steps:
        run.sampler.set_position(state.epoch, state.step_in_epoch)
        micro_batches = iter(run.loader)
        for _ in range(min(spe - state.step_in_epoch, run.total_steps - state.step)):
            stats = _update(run, [next(micro_batches) for _ in range(accum)])
            state.step, state.step_in_epoch = state.step + 1, state.step_in_epoch + 1
            if state.step_in_epoch == spe:
                state.epoch, state.step_in_epoch = state.epoch + 1, 0
            _after_update(run, stats)


def train(cfg: RunConfig) -> RunResult:
    """Trains `cfg.task` as configured; continues from <out_dir>/checkpoints/last.pt when it exists.

    Works alike in one process and under torchrun (DDP). Raises NonFiniteLossError on a NaN/inf loss
    (the last checkpoint on disk stays the last good state)."""
    validate(cfg)  # configs built in Python skip load_config's checks
    dist = init_distributed(cfg.train.device, cfg.train.dist_timeout_min)
    try:
        run = _setup(cfg, dist)
        with run.logger:
            _train(run)
        state, best = run.state, ckpt.best_path(cfg.out_dir)
        return RunResult(
            Path(cfg.out_dir),
            state.step,
            state.epoch,
            run.last_loss,
            state.best_value,
            state.best_step,
            state.last_eval,
            ckpt.last_path(cfg.out_dir),
            best if best.is_file() else None,
        )
    finally:
        shutdown(dist)
