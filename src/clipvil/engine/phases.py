"""Phases and per-optimizer stepping rules, resolved to update indices once per run.

A run is one or more named phases (`phases:` in the config; none = one phase "train"), each starting at
an update or an epoch. Every optimizer steps on the updates its schedule's `every` / `offset` / `phases`
allow, so alternating optimizers (speaker / follower) and an optimizer of one phase only need no custom
loop. Everything here is a pure function of the config and the number of updates per epoch.
"""

from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass

from clipvil.engine.config import PhaseConfig, RunConfig, ScheduleConfig

DEFAULT_PHASE = "train"


@dataclass(frozen=True)
class PhasePlan:
    """The run's phases as [start, end) update ranges, and which optimizer steps on which update."""

    names: tuple[str, ...]  # phase names in order
    starts: tuple[int, ...]  # first update index of each phase
    total_steps: int  # updates in the run
    rules: dict[str, ScheduleConfig]  # optimizer name -> its schedule (every, offset, phases)
    configs: tuple[PhaseConfig, ...]  # the phases as configured (empty for the implicit one)

    def phase_at(self, step: int) -> str:
        """Name of the phase that update `step` (0-based) belongs to."""
        return self.names[bisect_right(self.starts, step) - 1]

    def config_of(self, phase: str) -> PhaseConfig | None:
        """The configured phase of that name (None for the implicit single phase)."""
        return next((p for p in self.configs if p.name == phase), None)

    def bounds(self, phase: str) -> tuple[int, int]:
        """[start, end) update indices of `phase`."""
        i = self.names.index(phase)
        end = self.starts[i + 1] if i + 1 < len(self.starts) else self.total_steps
        return self.starts[i], min(end, self.total_steps)

    def steps(self, optimizer: str, step: int) -> bool:
        """Whether `optimizer` steps after update `step`."""
        rule = self.rules[optimizer]
        if rule.phases and self.phase_at(step) not in rule.phases:
            return False
        return (step - rule.offset) % rule.every == 0

    def stepping(self, step: int) -> frozenset[str]:
        """The optimizers that step after update `step`."""
        return frozenset(name for name in self.rules if self.steps(name, step))

    def updates_of(self, optimizer: str, start: int = 0, end: int | None = None) -> int:
        """How many times `optimizer` steps on updates [start, end) (the length its schedule runs over)."""
        end = self.total_steps if end is None else end
        return sum(self.steps(optimizer, s) for s in range(start, end))


def plan_phases(cfg: RunConfig, steps_per_epoch: int, total_steps: int) -> PhasePlan:
    """Resolves the config's phases (epoch starts converted with `steps_per_epoch`) and stepping rules."""
    configs = tuple(cfg.phases)
    if not configs:
        names, starts = (DEFAULT_PHASE,), (0,)
    else:
        names = tuple(p.name for p in configs)
        starts = tuple(p.start_step if p.start_step >= 0 else p.start_epoch * steps_per_epoch for p in configs)
        if list(starts) != sorted(starts) or len(set(starts)) != len(starts):
            raise ValueError(f"phases must start at increasing updates, got {dict(zip(names, starts))}")
    rules = {"main": cfg.schedule, **{name: extra.schedule for name, extra in cfg.extra_optimizers.items()}}
    return PhasePlan(names, starts, total_steps, rules, configs)
