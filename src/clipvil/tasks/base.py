"""The one interface between the training engine and a task (composition, not inheritance).

A task owns everything that knows both batch keys and model signatures: it builds the model, the
datasets and their collate function, turns a batch into a loss, and turns a model into metrics and a
results file in the official format. The engine (clipvil.train) knows only this protocol.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn
from torch.utils.data import Dataset

Batch = dict[str, Any]


class Task(Protocol):
    """What the training loop needs from a task."""

    primary_metric: str  # name of the metric in evaluate()'s result that picks the best checkpoint (higher = better)

    def build_model(self) -> nn.Module:
        """A fresh model with its initial weights (deterministic under torch.manual_seed)."""
        ...

    def dataset(self, split: str) -> Dataset:
        """The dataset of a split named in the task config (e.g. 'train', 'val'); items are dicts."""
        ...

    def collate(self, items: list[dict[str, Any]]) -> Batch:
        """Stacks dataset items into a batch of tensors (and plain lists for ids)."""
        ...

    def loss(self, model: nn.Module, batch: Batch) -> tuple[torch.Tensor, dict[str, float]]:
        """Scalar training loss of a batch and extra scalars to log (already detached floats)."""
        ...

    def evaluate(self, model: nn.Module, batches: Iterable[Batch], out_dir: Path | None) -> dict[str, Any]:
        """Metrics over the batches (a flat dict with `primary_metric` in it); when `out_dir` is given,
        also writes the predictions there in the official results format."""
        ...
