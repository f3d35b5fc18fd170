"""The training loop: one readable recipe driving any registered task module.

    train(cfg) -> RunResult        (auto-resumes from <out_dir>/checkpoints/last.pt)

Each update: the task is told where the run is (`set_progress`; `set_phase` at a phase switch), then
`grad_accum` micro-batches per rank go through the DDP-wrapped *task* (`loss, logs = task(batch)`, autocast,
loss / grad_accum, backward; DDP syncs gradients on the last one); the loss is averaged over ranks and
checked for NaN/inf; the optimizers whose rule says so are unscaled (fp16), clipped and stepped, with their
schedules. Then, on their schedules: a log record, an evaluation of every `eval_splits` split on rank 0
(RNG streams untouched), and a checkpoint with the full training state.

A recipe whose regime does not fit composes the same public blocks — `setup_run`, `next_update`,
`update`, `after_update`, `save_state`, `evaluate_splits` — instead of copying this loop.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import yaml
from torch import nn
from torch.utils.data import DataLoader, Dataset

from clipvil.common.atomic import atomic_write_text
from clipvil.common.distributed import (
    DistInfo,
    all_gather_object,
    broadcast_object,
    init_distributed,
    shutdown,
    wrap_model,
)
from clipvil.common.state_dict import remap_keys
from clipvil.engine import checkpoint as ckpt
from clipvil.engine.builders import batch_layout, build_task, train_loader
from clipvil.engine.config import RunConfig, config_to_dict, validate
from clipvil.engine.evaluate import improves, run_evaluation
from clipvil.engine.logs import RunLogger
from clipvil.engine.optim import build_optimizers, owns_phase_optimizer
from clipvil.engine.phases import PhasePlan, plan_phases
from clipvil.engine.seed import capture_rng, preserved_rng, seed_everything
from clipvil.engine.step import NonFiniteLossError, update
from clipvil.engine.task import Progress, ResumableSampler, TaskModule

log = logging.getLogger(__name__)

__all__ = ["NonFiniteLossError", "Run", "RunResult", "TrainState", "after_update", "evaluate_splits",
           "next_update", "save_state", "setup_run", "train", "update"]


@dataclass
class TrainState:
    """Counters saved in every checkpoint."""

    step: int = 0  # updates done
    epoch: int = 0  # epoch of the next update
    step_in_epoch: int = 0  # updates done within `epoch`
    phase: str = ""  # phase of the latest update ("" before the first); its optimizers are in the checkpoint
    best_value: float | None = None  # best primary metric on the best split so far
    best_step: int | None = None  # the update count at which it was reached
    last_eval: dict[str, Any] = field(default_factory=dict)  # {split: metrics} of the latest evaluation
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
    last_eval: dict[str, Any]  # {split: metrics} of the last evaluation
    last_checkpoint: Path  # <out_dir>/checkpoints/last.pt
    best_checkpoint: Path | None  # <out_dir>/checkpoints/best.pt, if an evaluation ran


@dataclass
class Run:
    """Everything one training run holds; built once by `setup_run`."""

    cfg: RunConfig
    dist: DistInfo
    task: TaskModule  # model + loss; task.model holds every trainable weight
    wrapped: nn.Module  # what each micro-batch goes through: DDP(task) in a distributed run
    plan: PhasePlan
    optimizers: dict[str, torch.optim.Optimizer]
    schedulers: dict[str, torch.optim.lr_scheduler.LRScheduler]
    scaler: torch.amp.GradScaler
    sampler: ResumableSampler
    loader: DataLoader
    logger: RunLogger
    state: TrainState = field(default_factory=TrainState)
    eval_sets: dict[str, Dataset] = field(default_factory=dict)
    window_start: float = field(default_factory=time.perf_counter)
    last_loss: float | None = None

    @property
    def total_steps(self) -> int:
        return self.plan.total_steps

    @property
    def best_split(self) -> str:
        return self.cfg.train.best_split or (self.cfg.train.eval_splits or [""])[0]


def setup_run(cfg: RunConfig, dist: DistInfo) -> Run:
    """Builds the task, data, optimizers and logger, and restores <out_dir>/checkpoints/last.pt if it exists.

    The run's config.yaml is written only once the resume (or init_from) succeeded: a refused resume leaves
    the file as it was."""
    out_dir, t = Path(cfg.out_dir), cfg.train
    if dist.is_main:
        ckpt.remove_stale_temporaries(out_dir / "checkpoints")
    task = build_task(cfg, dist.device, dist.rank, dist.world_size)
    train_set = task.dataset(t.train_split)
    sampler = task.batch_sampler(t.train_split, train_set, batch_layout(cfg, dist.rank, dist.world_size))
    spe = sampler.steps_per_epoch
    plan = plan_phases(cfg, spe, min(s for s in (t.max_steps, t.epochs * spe) if s > 0))
    saved = _read_last(cfg, dist)
    state = TrainState(**saved["train_state"]) if saved else TrainState()
    optimizers, schedulers = build_optimizers(task.model, cfg, spe, plan, state.phase or plan.phase_at(0))
    scaler = torch.amp.GradScaler(dist.device.type, enabled=t.amp == "fp16")
    seed_everything(t.seed + 1 + dist.rank)  # each rank's own stream (dropout, augmentation)
    if saved:
        last = ckpt.last_path(cfg.out_dir)
        ckpt.restore_training_state(last, saved, task.model, optimizers, schedulers, scaler, dist.rank,
                                    dist.world_size, dist.device)
        log.info("resuming %s at step %d (phase %s)", last, state.step, state.phase)
    elif t.init_from:
        _init_from(cfg, task, dist)
    _check_same_step(state, dist, cfg)
    if dist.is_main:
        _save_config_noting_changes(cfg, out_dir / "config.yaml")
    evaluates = t.eval_splits and (t.eval_every or t.eval_each_epoch or t.eval_at_end)
    eval_sets = {s: task.dataset(s) for s in t.eval_splits} if dist.is_main and evaluates else {}  # fail early
    loader = train_loader(task, train_set, sampler, cfg, dist.device)
    wrapped = wrap_model(task, dist, t.find_unused_parameters)
    logger = RunLogger(out_dir, dist.is_main, state.step, plan.total_steps, t.tensorboard, t.progress)
    return Run(cfg, dist, task, wrapped, plan, optimizers, schedulers, scaler, sampler, loader, logger, state,
               eval_sets)


def _read_last(cfg: RunConfig, dist: DistInfo) -> dict[str, Any] | None:
    last = ckpt.last_path(cfg.out_dir)
    return ckpt.load_checkpoint(last, map_location=dist.device) if last.is_file() else None


def _init_from(cfg: RunConfig, task: TaskModule, dist: DistInfo) -> None:
    t = cfg.train
    source = ckpt.load_checkpoint(t.init_from, map_location=dist.device)
    weights = remap_keys(source["model"], t.init_key_map)
    missing, unexpected = ckpt.load_model_state(task.model, weights, t.init_from, strict=t.init_strict)
    log.info("initialised from %s (%d missing, %d unexpected keys)", t.init_from, len(missing), len(unexpected))


def _check_same_step(state: TrainState, dist: DistInfo, cfg: RunConfig) -> None:
    steps = all_gather_object(state.step, dist)
    if len(set(steps)) > 1:
        raise RuntimeError(
            f"ranks resume from different steps {steps}: every node must see the same "
            f"{ckpt.last_path(cfg.out_dir)} (put out_dir on a shared filesystem)"
        )


def _save_config_noting_changes(cfg: RunConfig, path: Path) -> None:
    new = config_to_dict(cfg)
    if path.is_file():
        old = yaml.safe_load(path.read_text()) or {}
        changed = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
        if changed:
            log.warning("%s: config sections changed since the last start: %s", path, ", ".join(changed))
    atomic_write_text(path, yaml.safe_dump(new, sort_keys=False))


def next_update(run: Run) -> Progress:
    """Prepares update `state.step`: switches phase when one begins (a fresh main optimizer when the phase
    has its own settings), then tells the task where the run is. Returns that progress."""
    state, plan = run.state, run.plan
    phase = plan.phase_at(state.step)
    if phase != state.phase:
        if state.phase and owns_phase_optimizer(plan, phase):
            spe = run.sampler.steps_per_epoch
            fresh, schedules = build_optimizers(run.task.model, run.cfg, spe, plan, phase)
            run.optimizers["main"], run.schedulers["main"] = fresh["main"], schedules["main"]
        if state.phase:
            log.info("phase %s -> %s at update %d", state.phase, phase, state.step)
        run.task.set_phase(phase)
        state.phase = phase
    elif state.step == 0 or run.task.phase != phase:  # a fresh or resumed run: tell the task its phase
        run.task.set_phase(phase)
    progress = Progress(state.step, state.epoch, phase, plan.stepping(state.step))
    run.task.set_progress(progress)
    return progress


def after_update(run: Run, stats: dict[str, float]) -> None:
    """Advances the counters, then the logging, evaluation and checkpointing due after an update."""
    t, state, spe = run.cfg.train, run.state, run.sampler.steps_per_epoch
    state.step, state.step_in_epoch = state.step + 1, state.step_in_epoch + 1
    if state.step_in_epoch == spe:
        state.epoch, state.step_in_epoch = state.epoch + 1, 0
    for key, value in stats.items():
        state.window[key] = state.window.get(key, 0.0) + value
    state.window["steps"] = state.window.get("steps", 0.0) + 1
    run.logger.advance()
    last, epoch_end = state.step == run.total_steps, state.step_in_epoch == 0
    if state.step % t.log_every == 0 or last:
        _log_window(run, stats)
    improved = False
    if t.eval_splits and (
        (t.eval_every and state.step % t.eval_every == 0) or (t.eval_each_epoch and epoch_end)
        or (t.eval_at_end and last)
    ):
        improved = broadcast_object(evaluate_splits(run), run.dist)
    if improved or state.step % t.checkpoint_every == 0 or epoch_end or last:
        save_state(run, best=improved)


def _log_window(run: Run, stats: dict[str, float]) -> None:
    state, now = run.state, time.perf_counter()
    steps = state.window.pop("steps")
    record: dict[str, Any] = {"step": state.step, "epoch": state.step / run.sampler.steps_per_epoch,
                              "phase": state.phase}
    for key, total in state.window.items():
        record[key] = total / steps
    record.update({k: v for k, v in stats.items() if k == "lr" or k.startswith("lr/")})  # latest rates
    record["samples_per_sec"] = steps * run.cfg.train.batch_size / max(now - run.window_start, 1e-9)
    if state.step % run.cfg.train.log_every:  # the run ends inside a window: log it, but keep it open
        record["partial"] = True  # so that a continued run (max_steps raised) logs the full window
        state.window["steps"] = steps
    else:
        state.window, run.window_start = {}, now
    run.logger.log_train(record)
    run.last_loss = record["loss"]


def evaluate_splits(run: Run) -> bool:
    """Evaluates every eval split on rank 0, each logged under its name; True when the primary metric of
    the best split improved in its direction (then best.pt gets this state)."""
    if not run.dist.is_main:
        return False
    cfg, state, task = run.cfg, run.state, run.task
    for split in cfg.train.eval_splits:
        if split not in run.eval_sets:  # built in setup_run; missing only if evaluation was off there
            run.eval_sets[split] = task.dataset(split)
        out = Path(cfg.out_dir) / "eval" / f"step{state.step:07d}" / split if cfg.train.save_predictions else None
        with preserved_rng():  # evaluation must not shift the training RNG streams
            metrics = run_evaluation(task, run.eval_sets[split], split, cfg, run.dist.device, out)
        state.last_eval[split] = metrics
        epoch = state.step / run.sampler.steps_per_epoch
        run.logger.log_eval({"step": state.step, "epoch": epoch, "split": split, **metrics})
    value = float(state.last_eval[run.best_split][task.primary_metric])
    if improves(value, state.best_value, task.higher_is_better):
        state.best_value, state.best_step = value, state.step
        return True
    return False


def save_state(run: Run, best: bool) -> None:
    """Writes last.pt (and best.pt): every rank contributes its RNG state; rank 0 writes."""
    model = run.task.model
    bad = ckpt.first_non_finite(model)  # identical weights on every rank: all stop together
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
            "model": model.state_dict(),
            "artifacts": run.task.artifacts(),
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


def _train(run: Run) -> None:
    accum, state = run.cfg.train.grad_accum, run.state
    while state.step < run.total_steps:
        run.sampler.set_position(state.epoch, state.step_in_epoch)
        micro_batches = iter(run.loader)
        epoch = state.epoch
        while state.step < run.total_steps and state.epoch == epoch:
            progress = next_update(run)
            stats = update(run, [next(micro_batches) for _ in range(accum)], progress)
            after_update(run, stats)


def train(cfg: RunConfig) -> RunResult:
    """Trains `cfg.task` as configured; continues from <out_dir>/checkpoints/last.pt when it exists.

    Works alike in one process and under torchrun (DDP). Raises NonFiniteLossError on a NaN/inf loss
    (the last checkpoint on disk stays the last good state)."""
    validate(cfg)  # configs built in Python skip load_config's checks
    dist = init_distributed(cfg.train.device, cfg.train.dist_timeout_min)
    try:
        run = setup_run(cfg, dist)
        with run.logger:
            _train(run)
        state, best = run.state, ckpt.best_path(cfg.out_dir)
        return RunResult(Path(cfg.out_dir), state.step, state.epoch, run.last_loss, state.best_value,
                         state.best_step, state.last_eval, ckpt.last_path(cfg.out_dir),
                         best if best.is_file() else None)
    finally:
        shutdown(dist)
