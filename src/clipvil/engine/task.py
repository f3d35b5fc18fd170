"""The one seam between the training engine and a task family.

A task is one `nn.Module` that holds the model and its loss (as open_clip's trainer treats model + loss):

    loss, logs = task(batch)        # forward(batch) -> (scalar loss, {name: float})

The engine wraps the *whole task* in DDP, so a step that calls the model many times (a navigation
rollout, a sampling pass for self-critical training) is one DDP forward. Everything trainable lives in
`task.model` (checkpoints save `task.model.state_dict()`); the task also builds its datasets, collate
function and optional batch sampler, and turns a model into metrics and an official results file for a
named split.

Optional hooks (defaults in `TaskModule` keep the plain loop's behaviour):

    batch_sampler(split, dataset, layout) -> ResumableSampler      length/aspect-ratio buckets
    set_phase(name)                                                 e.g. "xe" -> "scst" at an epoch
    set_progress(progress)                                          step, epoch, phase, stepping optimizers
    artifacts() -> dict                                             what predict/evaluate need (vocabularies,
                                                                    feature provenance), saved in checkpoints
    primary_metric / higher_is_better                               which metric picks best.pt, and its direction
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import torch
from torch import nn
from torch.utils.data import Dataset

from clipvil.data.samplers import ResumableBatchSampler

Batch = dict[str, Any]


@dataclass(frozen=True)
class BatchLayout:
    """How the engine cuts global batches: what a task's batch sampler must honour."""

    batch_size: int  # global batch per update (all ranks, all micro-batches)
    grad_accum: int  # micro-batches per update on each rank
    rank: int  # this process
    world_size: int  # number of processes
    seed: int  # shuffling seed (epoch e uses seed + e)
    shuffle: bool  # False: dataset order


@runtime_checkable
class ResumableSampler(Protocol):
    """A batch sampler the engine can restart at any (epoch, update) position."""

    @property
    def steps_per_epoch(self) -> int: ...

    def set_position(self, epoch: int, step_in_epoch: int) -> None: ...

    def __iter__(self) -> Iterator[list[int]]: ...  # this rank's micro-batches, grad_accum per update

    def __len__(self) -> int: ...


@dataclass(frozen=True)
class Progress:
    """Where the run is, told to the task before every update."""

    step: int  # updates done before this one
    epoch: int  # epoch of this update
    phase: str  # name of the current phase ("train" when the config defines none)
    stepping: frozenset[str] = field(default_factory=frozenset)  # optimizers that step after this update


class TaskModule(nn.Module):
    """Base of every task: an nn.Module whose forward(batch) returns (loss, logs), plus the hooks' defaults.

    Subclasses set `self.model` in __init__ and implement forward, dataset, collate and evaluate."""

    primary_metric: str = "accuracy"
    higher_is_better: bool = True

    def __init__(self) -> None:
        super().__init__()
        self.phase = "train"
        self.progress = Progress(0, 0, "train")

    def forward(self, batch: Batch) -> tuple[torch.Tensor, dict[str, float]]:  # pragma: no cover - abstract
        raise NotImplementedError

    def dataset(self, split: str) -> Dataset:  # pragma: no cover - abstract
        raise NotImplementedError

    def collate(self, items: list[dict[str, Any]]) -> Batch:  # pragma: no cover - abstract
        raise NotImplementedError

    def evaluate(self, batches: Iterable[Batch], split: str, out_dir: Path | None) -> dict[str, Any]:
        raise NotImplementedError  # pragma: no cover - abstract

    def batch_sampler(self, split: str, dataset: Dataset, layout: BatchLayout) -> ResumableSampler:
        """The training batch sampler (default: a shuffled, resumable sampler over the whole split)."""
        return ResumableBatchSampler(
            len(dataset),  # type: ignore[arg-type]
            layout.batch_size,
            layout.grad_accum,
            layout.rank,
            layout.world_size,
            layout.seed,
            layout.shuffle,
        )

    def set_phase(self, phase: str) -> None:
        """Called when the run enters phase `phase` (also when a run resumes inside it)."""
        self.phase = phase

    def set_progress(self, progress: Progress) -> None:
        """Called before every update."""
        self.progress = progress

    def artifacts(self) -> dict[str, Any]:
        """Plain data (JSON-able) saved in every checkpoint: what predict/evaluate need beside the weights."""
        return {}
