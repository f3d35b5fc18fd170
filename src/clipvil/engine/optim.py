"""Optimizers (one per parameter partition) and their learning-rate schedules.

The model's trainable parameters are split between the main optimizer (`optim` + `schedule`) and any
`extra_optimizers` (each owns the parameters of the sub-modules it names). Every optimizer gets a
`torch.optim.lr_scheduler.LambdaLR` whose multiplier is `schedule_factor(...)`; the engine steps it
each time its optimizer steps, so the optimizer's k-th update (0-based) runs at `optim.lr *
schedule_factor(k)` — with the default rule (every update, every phase) k is the run's update index.
"""

from __future__ import annotations

import math
from bisect import bisect_right

import torch
from torch import nn
from torch.optim.lr_scheduler import LambdaLR, LRScheduler

from clipvil.engine.config import OptimConfig, RunConfig, ScheduleConfig
from clipvil.engine.phases import PhasePlan

MAIN = "main"  # name of the optimizer built from the `optim` section


def _groups(params: list[nn.Parameter], cfg: OptimConfig) -> list[dict]:
    if cfg.decay_1d or cfg.weight_decay == 0:
        return [{"params": params}]
    decay = [p for p in params if p.ndim > 1]
    no_decay = [p for p in params if p.ndim <= 1]
    return [g for g in ({"params": decay}, {"params": no_decay, "weight_decay": 0.0}) if g["params"]]


def build_optimizer(params: list[nn.Parameter], cfg: OptimConfig) -> torch.optim.Optimizer:
    """A torch.optim optimizer over `params` as the config says (one or two param groups)."""
    groups = _groups(params, cfg)
    if cfg.name == "sgd":
        return torch.optim.SGD(
            groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov, weight_decay=cfg.weight_decay
        )
    if cfg.name == "rmsprop":
        return torch.optim.RMSprop(groups, lr=cfg.lr, eps=cfg.eps, weight_decay=cfg.weight_decay, momentum=cfg.momentum)
    adam_family = {"adamw": torch.optim.AdamW, "adam": torch.optim.Adam, "adamax": torch.optim.Adamax}
    return adam_family[cfg.name](
        groups, lr=cfg.lr, betas=cfg.betas, eps=cfg.eps, weight_decay=cfg.weight_decay
    )


def partition_parameters(model: nn.Module, cfg: RunConfig) -> dict[str, list[nn.Parameter]]:
    """Trainable parameters per optimizer name: each extra optimizer's sub-modules, the rest to 'main'.

    Raises ValueError for an unknown sub-module path, a parameter claimed twice or an empty partition."""
    owner: dict[int, str] = {}
    parts: dict[str, list[nn.Parameter]] = {}
    for name, extra in cfg.extra_optimizers.items():
        parts[name] = []
        for path in extra.modules:
            try:
                module = model.get_submodule(path)
            except AttributeError as err:
                children = ", ".join(n for n, _ in model.named_children())
                raise ValueError(
                    f"extra_optimizers.{name}.modules: no sub-module {path!r} in {type(model).__name__} "
                    f"(top-level children: {children})"
                ) from err
            for param in module.parameters():
                if not param.requires_grad:
                    continue
                if id(param) in owner:
                    raise ValueError(
                        f"extra_optimizers.{name}.modules: {path!r} has parameters already owned by "
                        f"optimizer {owner[id(param)]!r}"
                    )
                owner[id(param)] = name
                parts[name].append(param)
        if not parts[name]:
            raise ValueError(f"extra_optimizers.{name}: modules {extra.modules} have no trainable parameters")
    main = [p for p in model.parameters() if p.requires_grad and id(p) not in owner]
    if not main:
        raise ValueError("no trainable parameters are left for the main optimizer (`optim`)")
    return {MAIN: main, **parts}


def schedule_factor(cfg: ScheduleConfig, step: int, steps_per_epoch: int, total_steps: int) -> float:
    """Learning-rate multiplier of update `step` (0-based).

    `steps_per_epoch` converts epoch units to updates; `total_steps` is the run's number of updates
    (the end of the `linear` decay)."""
    unit_len = steps_per_epoch if cfg.unit == "epoch" else 1
    unit = step // unit_len  # index of the step (or epoch) this update belongs to
    if cfg.name == "noam":
        n = step + 1
        warmup_steps = max(cfg.warmup * unit_len, 1)
        return cfg.d_model**-0.5 * min(n**-0.5, n * warmup_steps**-1.5)
    if cfg.warmup > 0 and unit < cfg.warmup:
        if cfg.warmup_mode == "staircase":
            return (unit + 1) / (cfg.warmup + 1)
        alpha = step / (cfg.warmup * unit_len)
        return cfg.warmup_factor * (1.0 - alpha) + alpha
    if cfg.name == "linear":
        start = cfg.warmup * unit_len
        return max(0.0, (total_steps - step) / max(total_steps - start, 1))
    if cfg.name == "cosine":
        start = cfg.warmup * unit_len
        progress = min(1.0, (step - start) / max(total_steps - start, 1))
        return 0.5 * (1.0 + math.cos(math.pi * progress))
    return cfg.decay ** bisect_right(sorted(cfg.milestones), unit)


def build_scheduler(
    optimizer: torch.optim.Optimizer, cfg: ScheduleConfig, steps_per_epoch: int, total_steps: int
) -> LRScheduler:
    """A LambdaLR applying `schedule_factor` to every param group of `optimizer`."""
    if steps_per_epoch < 1 or total_steps < 1:
        raise ValueError(
            f"steps_per_epoch and total_steps must be >= 1, got {steps_per_epoch}, {total_steps}"
        )

    def factor(step: int) -> float:
        return schedule_factor(cfg, step, steps_per_epoch, total_steps)

    if not math.isfinite(factor(0)):
        raise ValueError(f"schedule {cfg} gives a non-finite learning rate")
    return LambdaLR(optimizer, factor)


def main_settings(cfg: RunConfig, plan: PhasePlan, phase: str) -> tuple[OptimConfig, ScheduleConfig, int, int]:
    """The main optimizer's settings in `phase`: the phase's own optim/schedule when it has them (a fresh
    optimizer from the phase's start), else the top-level ones over the whole run; plus the [start, end)
    updates its schedule spans."""
    phase_cfg = plan.config_of(phase)
    if phase_cfg is not None and (phase_cfg.optim is not None or phase_cfg.schedule is not None):
        start, end = plan.bounds(phase)
        return phase_cfg.optim or cfg.optim, phase_cfg.schedule or cfg.schedule, start, end
    return cfg.optim, cfg.schedule, 0, plan.total_steps


def owns_phase_optimizer(plan: PhasePlan, phase: str) -> bool:
    """True when `phase` builds a fresh main optimizer at its start."""
    phase_cfg = plan.config_of(phase)
    return phase_cfg is not None and (phase_cfg.optim is not None or phase_cfg.schedule is not None)


def build_optimizers(
    model: nn.Module, cfg: RunConfig, steps_per_epoch: int, plan: PhasePlan, phase: str
) -> tuple[dict[str, torch.optim.Optimizer], dict[str, LRScheduler]]:
    """Optimizers and schedulers by name ('main' first, then `extra_optimizers` in config order) as they
    are in `phase`. Each schedule runs over its own optimizer's updates."""
    optimizers: dict[str, torch.optim.Optimizer] = {}
    schedulers: dict[str, LRScheduler] = {}
    for name, params in partition_parameters(model, cfg).items():
        if name == MAIN:
            optim_cfg, sched_cfg, start, end = main_settings(cfg, plan, phase)
        else:
            extra = cfg.extra_optimizers[name]
            optim_cfg, sched_cfg, start, end = extra.optim, extra.schedule, 0, plan.total_steps
        optimizers[name] = build_optimizer(params, optim_cfg)
        updates = max(plan.updates_of(name, start, end), 1)
        schedulers[name] = build_scheduler(optimizers[name], sched_cfg, steps_per_epoch, updates)
    return optimizers, schedulers
