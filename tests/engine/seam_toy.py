"""A toy task exercising every optional hook of the engine's seam (registered as `toy_seam`).

- `calls` > 1: forward applies the model's `step` layer several times (a rollout in one DDP forward);
- phases: in a phase named "l1" the loss is the mean absolute error instead of the squared one;
- `two_models`: a follower and a speaker, each updated by its own optimizer; forward computes the loss of
  the ones stepping in this update (Progress.stepping);
- `buckets` > 0: a bucketed batch sampler (item i in bucket i % buckets) and a log of bucket purity;
- two evaluation splits (val_a, val_b) of different targets; lower mse is better.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset
from train_toy import ToyDataset  # items {ids, x, y}

from clipvil.data.samplers import BucketBatchSampler
from clipvil.engine import RunConfig, config_from_dict
from clipvil.engine.registry import RunContext, register_task
from clipvil.engine.task import BatchLayout, ResumableSampler, TaskModule

TASK_NAME = "toy_seam"
SPLITS = {"train": (1, 0.5), "val_a": (2, 0.5), "val_b": (3, -0.5)}  # split -> (data seed, target offset)


@dataclass
class SeamConfig:
    """The seam toy's knobs."""

    n_train: int = 48  # training examples
    n_val: int = 16  # examples per validation split
    dim: int = 4  # input width
    calls: int = 1  # applications of the model's step layer per forward
    two_models: bool = False  # a follower and a speaker with their own optimizers
    buckets: int = 0  # > 0: bucketed batches
    sleep: float = 0.0  # seconds slept per forward (kill tests)


class Agent(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.step = nn.Linear(dim, dim)
        self.head = nn.Linear(dim, 1)

    def forward(self, x: torch.Tensor, calls: int) -> torch.Tensor:
        h = x  # [B, D]
        for _ in range(calls):
            h = torch.tanh(self.step(h)) + x  # [B, D]
        return self.head(h).squeeze(-1)  # [B]


class Pair(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.follower, self.speaker = Agent(dim), Agent(dim)


def make_split(cfg: SeamConfig, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    seed, offset = SPLITS[split]
    g = torch.Generator().manual_seed(seed)
    n = cfg.n_train if split == "train" else cfg.n_val
    x = torch.randn(n, cfg.dim, generator=g)  # [N, D]
    y = x @ torch.linspace(-1.0, 1.0, cfg.dim) + offset  # [N]
    return x, y


class SeamTask(TaskModule):
    primary_metric = "mse"
    higher_is_better = False

    def __init__(self, cfg: SeamConfig, ctx: RunContext | None = None) -> None:
        super().__init__()
        self.cfg = cfg
        self.model = Pair(cfg.dim) if cfg.two_models else Agent(cfg.dim)

    def dataset(self, split: str) -> Dataset:
        if split not in SPLITS:
            raise KeyError(f"toy_seam: unknown split {split!r}")
        return ToyDataset(*make_split(self.cfg, split))

    def collate(self, items: list[dict[str, Any]]) -> dict[str, Any]:
        return {"ids": [it["ids"] for it in items], "x": torch.stack([it["x"] for it in items]),
                "y": torch.stack([it["y"] for it in items])}

    def batch_sampler(self, split: str, dataset: Dataset, layout: BatchLayout) -> ResumableSampler:
        if not self.cfg.buckets:
            return super().batch_sampler(split, dataset, layout)
        buckets = [i % self.cfg.buckets for i in range(len(dataset))]  # type: ignore[arg-type]
        return BucketBatchSampler(buckets, layout.batch_size, layout.grad_accum, layout.rank, layout.world_size,
                                  layout.seed, layout.shuffle)

    def _error(self, agent: Agent, batch: dict[str, Any]) -> torch.Tensor:
        err = agent(batch["x"], self.cfg.calls).float() - batch["y"]  # [B]
        return err.abs().mean() if self.phase == "l1" else (err**2).mean()

    def forward(self, batch: dict[str, Any]) -> tuple[torch.Tensor, dict[str, float]]:
        if self.cfg.sleep:
            time.sleep(self.cfg.sleep)
        logs = {"l1": float(self.phase == "l1")}
        if self.cfg.buckets:
            logs["pure"] = float(len({i % self.cfg.buckets for i in batch["ids"]}) == 1)
        if not self.cfg.two_models:
            return self._error(self.model, batch), logs
        stepping = self.progress.stepping
        parts = [self._error(m, batch) for name, m in (("main", self.model.follower), ("speaker", self.model.speaker))
                 if name in stepping]
        logs["speaker_turn"] = float("speaker" in stepping)
        return torch.stack(parts).sum(), logs

    def evaluate(self, batches: Iterable[dict[str, Any]], split: str, out_dir: Path | None) -> dict[str, Any]:
        agent = self.model.follower if self.cfg.two_models else self.model
        sq, n = 0.0, 0
        for batch in batches:
            sq += float(((agent(batch["x"], self.cfg.calls).float() - batch["y"]) ** 2).sum())
            n += len(batch["ids"])
        return {"mse": sq / n, "count": n, "split_seen": split}


register_task(TASK_NAME, SeamConfig, SeamTask)


def seam_config(out_dir: str | Path, *overrides: str, extra: dict[str, Any] | None = None) -> RunConfig:
    """A small SGD run of the seam toy (batch 8, 12 updates, CPU, quiet)."""
    data: dict[str, Any] = {
        "task": {"name": TASK_NAME},
        "optim": {"name": "sgd", "lr": 0.05},
        "train": {"batch_size": 8, "max_steps": 12, "log_every": 1, "checkpoint_every": 4, "device": "cpu",
                  "eval_each_epoch": False, "eval_at_end": True, "eval_splits": ["val_a"], "tensorboard": False,
                  "progress": False},
        "out_dir": str(out_dir),
        **(extra or {}),
    }
    return config_from_dict(data, list(overrides), source="seam_config()")
