"""Data of the VLN task: instruction files → tokenised items, the dataset, and the back-translation sampler.

- Splits are R2R files (`R2R_<split>.json`) or RxR guide files (`rxr_<split>_guide.jsonl[.gz]`), or any file
  named in `split_files`; RxR items are kept for the configured language only.
- An item is one instruction with its path: {"episode": NavInstruction, "tokens": [max_input ids] or None}.
  Instructions that tokenise to nothing are dropped (EnvDrop's filter). Augmented paths (back-translation)
  have no tokens: the speaker writes their instructions during training.
- `AlternatingBatchSampler` (back-translation, EnvDrop's `--accumulateGrad`): each update is `grad_accum`
  micro-batches per rank, the first half from the real instructions and the second half from the augmented
  paths, so one update accumulates the gradient of a real batch and of an augmented batch of the same size.
  Both sources keep their own seeded, resumable order (the augmented one runs through its own epochs); the
  cut into ranks is the engine's (rank r of W takes every W-th chunk), so DDP sees the one-process batches.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset

from clipvil.data.nav import NavInstruction, read_r2r, read_rxr
from clipvil.data.nav_text import InstructionTokenizer
from clipvil.data.samplers import ResumableBatchSampler
from clipvil.engine.task import BatchLayout


def split_file(data_dir: Path, dataset: str, name: str, split_files: Mapping[str, str]) -> Path:
    """The instruction file of split `name` (split_files first, then the dataset's naming)."""
    if name in split_files:
        return data_dir / split_files[name]
    if dataset == "r2r":
        return data_dir / f"R2R_{name}.json"
    for suffix in (".jsonl", ".jsonl.gz", ".json"):
        path = data_dir / f"rxr_{name}_guide{suffix}"
        if path.is_file():
            return path
    return data_dir / f"rxr_{name}_guide.jsonl"


def read_split(path: Path, dataset: str, language: str) -> list[NavInstruction]:
    """The instructions of one file (RxR: of `language` only, when set)."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such {dataset.upper()} instruction file (task.data_dir / split_files)")
    if dataset == "r2r":
        return read_r2r(path)
    items = read_rxr(path, languages=[language] if language else None)
    if not items:
        raise ValueError(f"{path}: no instruction in language {language!r}")
    return items


class NavDataset(Dataset):
    """Tokenised instructions (or augmented paths without instructions)."""

    def __init__(self, episodes: Sequence[NavInstruction], tokens: Sequence[list[int] | None],
                 augmented: bool = False) -> None:
        self.episodes = list(episodes)
        self.tokens = list(tokens)
        self.augmented = augmented

    def __len__(self) -> int:
        return len(self.episodes)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return {"episode": self.episodes[i], "tokens": self.tokens[i], "augmented": self.augmented}


def tokenised(episodes: Sequence[NavInstruction], tok: InstructionTokenizer) -> NavDataset:
    """The dataset of the instructions that encode to at least one token."""
    kept, ids = [], []
    for ep in episodes:
        enc = tok.encode(ep.instruction)
        if enc is not None:
            kept.append(ep)
            ids.append(enc)
    return NavDataset(kept, ids)


class JoinedDataset(Dataset):
    """Real items first (indices 0..n_real-1), then augmented ones."""

    def __init__(self, real: NavDataset, aug: NavDataset) -> None:
        self.real, self.aug = real, aug

    def __len__(self) -> int:
        return len(self.real) + len(self.aug)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return self.real[i] if i < len(self.real) else self.aug[i - len(self.real)]


def pad_tokens(rows: Sequence[Sequence[int]], pad: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Token rows → [B, T] long (T = longest real length in the batch, as EnvDrop trims) and mask [B, T]."""
    lengths = [next((k for k, t in enumerate(r) if t == pad), len(r)) for r in rows]
    width = max(max(lengths), 1)
    tokens = torch.full((len(rows), width), pad, dtype=torch.long)  # [B, T]
    for i, (r, n) in enumerate(zip(rows, lengths)):
        tokens[i, :n] = torch.as_tensor(list(r[:n]), dtype=torch.long)
    return tokens, tokens != pad  # [B, T], [B, T]


class AlternatingBatchSampler:
    """Real micro-batches, then augmented ones, in every update (module docstring)."""

    def __init__(self, n_real: int, n_aug: int, layout: BatchLayout) -> None:
        if layout.grad_accum % 2:
            raise ValueError(f"back-translation alternates real and augmented micro-batches: train.grad_accum "
                             f"must be even, got {layout.grad_accum}")
        half = layout.grad_accum // 2
        size = layout.batch_size // 2
        args = (half, layout.rank, layout.world_size)
        self.real = ResumableBatchSampler(n_real, size, *args, layout.seed, layout.shuffle)
        self.aug = ResumableBatchSampler(n_aug, size, *args, layout.seed + 7919, layout.shuffle)
        self.n_real = n_real
        self.half = half
        self.epoch, self.start_step = 0, 0
        self._aug_order: tuple[int, list[int]] = (-1, [])

    @property
    def steps_per_epoch(self) -> int:
        return self.real.steps_per_epoch

    def set_position(self, epoch: int, step_in_epoch: int) -> None:
        self.real.set_position(epoch, step_in_epoch)
        self.epoch, self.start_step = epoch, step_in_epoch

    def _aug_chunks(self, update: int) -> Iterator[list[int]]:
        """This rank's augmented micro-batches of global update `update` (counted over the whole run)."""
        aug, spe = self.aug, self.aug.steps_per_epoch
        epoch, step = divmod(update, spe)
        if self._aug_order[0] != epoch:
            self._aug_order = (epoch, aug.epoch_order(epoch))
        batch = self._aug_order[1][step * aug.batch_size:(step + 1) * aug.batch_size]
        m = aug.micro_batch
        for accum in range(self.half):
            chunk = accum * aug.world_size + aug.rank
            yield [self.n_real + i for i in batch[chunk * m:(chunk + 1) * m]]

    def __iter__(self) -> Iterator[list[int]]:
        real = iter(self.real)
        for step in range(self.start_step, self.steps_per_epoch):
            for _ in range(self.half):
                yield next(real)
            yield from self._aug_chunks(self.epoch * self.steps_per_epoch + step)

    def __len__(self) -> int:
        return (self.steps_per_epoch - self.start_step) * self.half * 2
