"""A deterministic toy task for the engine's tests: regression y = x . w + 0.5 + noise on a synthetic set.

Registered as task `toy_regression`. Test-only knobs poison one item (NaN input, or a NaN gradient
with a finite loss) and slow the loss down so a subprocess can be killed mid-run.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset

from clipvil.engine import RunConfig, config_from_dict
from clipvil.engine.registry import RunContext, register_task
from clipvil.engine.task import TaskModule

TASK_NAME = "toy_regression"


@dataclass
class ToyConfig:
    """The toy task's own config section."""

    n_train: int = 64  # training examples
    n_val: int = 24  # validation examples
    dim: int = 4  # input features
    hidden: int = 0  # hidden width (0: the model is a single Linear `head`)
    dropout: float = 0.0  # dropout in the hidden block (exercises RNG restore on resume)
    noise: float = 0.1  # label noise std
    nan_id: int = -1  # training item whose input is NaN -> non-finite loss (-1: none)
    nan_grad_id: int = -1  # training item giving a finite loss but NaN gradients (-1: none)
    sleep: float = 0.0  # seconds slept per loss() call


class ToyNet(nn.Module):
    def __init__(self, dim: int, hidden: int, dropout: float) -> None:
        super().__init__()
        width = hidden or dim
        self.body = (
            nn.Sequential(nn.Linear(dim, hidden), nn.Tanh(), nn.Dropout(dropout)) if hidden else nn.Identity()
        )
        self.head = nn.Linear(width, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x)).squeeze(-1)  # [B]


class ToyDataset(Dataset):
    def __init__(self, x: torch.Tensor, y: torch.Tensor) -> None:
        self.x, self.y = x, y  # [N, D], [N]

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return {"ids": i, "x": self.x[i], "y": self.y[i]}


def make_split(cfg: ToyConfig, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """The split's inputs [N, D] and targets [N] (fixed generators: independent of the global RNG)."""
    w_true = torch.linspace(-1.0, 1.0, cfg.dim)  # [D]
    n, seed = (cfg.n_train, 1) if split == "train" else (cfg.n_val, 2)
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, cfg.dim, generator=g)  # [N, D]
    y = x @ w_true + 0.5 + cfg.noise * torch.randn(n, generator=g)  # [N]
    if split == "train" and cfg.nan_id >= 0:
        x[cfg.nan_id] = float("nan")
    return x, y


class ToyTask(TaskModule):
    primary_metric = "neg_mse"

    def __init__(self, cfg: ToyConfig, ctx: RunContext | None = None) -> None:
        super().__init__()
        self.cfg = cfg
        self.model = ToyNet(cfg.dim, cfg.hidden, cfg.dropout)

    def dataset(self, split: str) -> Dataset:
        if split not in ("train", "val"):
            raise KeyError(f"toy task: unknown split {split!r}")
        return ToyDataset(*make_split(self.cfg, split))

    def collate(self, items: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "ids": [it["ids"] for it in items],
            "x": torch.stack([it["x"] for it in items]),  # [B, D]
            "y": torch.stack([it["y"] for it in items]),  # [B]
        }

    def forward(self, batch: dict[str, Any]) -> tuple[torch.Tensor, dict[str, float]]:
        if self.cfg.sleep:
            time.sleep(self.cfg.sleep)
        pred = self.model(batch["x"])  # [B]
        bits = float(torch.finfo(pred.dtype).bits)  # 16 under bf16/fp16 autocast
        loss = ((pred.float() - batch["y"]) ** 2).mean()
        if self.cfg.nan_grad_id in batch["ids"]:
            minus_one = pred.float().sum() * 0 - 1.0  # depends on the weights
            loss = loss + torch.where(torch.tensor(False), torch.sqrt(minus_one), torch.zeros(()))
        mae = float((pred.detach().float() - batch["y"]).abs().mean())
        return loss, {"mae": mae, "pred_bits": bits}

    def evaluate(
        self, batches: Iterable[dict[str, Any]], split: str, out_dir: Path | None
    ) -> dict[str, Any]:
        ids, preds, sq = [], [], 0.0
        for batch in batches:
            pred = self.model(batch["x"]).float()  # [B]
            sq += float(((pred - batch["y"]) ** 2).sum())
            ids += batch["ids"]
            preds += pred.tolist()
        mse = sq / len(ids)
        if out_dir is not None:
            out_dir.mkdir(parents=True, exist_ok=True)
            results = [{"id": i, "prediction": p} for i, p in zip(ids, preds)]
            (out_dir / "results.json").write_text(json.dumps(results))
        return {"neg_mse": -mse, "mse": mse, "count": len(ids)}


register_task(TASK_NAME, ToyConfig, ToyTask)


def toy_config(out_dir: str | Path, *overrides: str) -> RunConfig:
    """A small, fast run config for the toy task (SGD, batch 8, 10 updates, CPU, quiet)."""
    data = {
        "task": {"name": TASK_NAME},
        "optim": {"name": "sgd", "lr": 0.1},
        "train": {
            "batch_size": 8,
            "max_steps": 10,
            "log_every": 1,
            "checkpoint_every": 5,
            "device": "cpu",
            "eval_each_epoch": False,
            "tensorboard": False,
            "progress": False,
        },
        "out_dir": str(out_dir),
    }
    return config_from_dict(data, list(overrides), source="toy_config()")
