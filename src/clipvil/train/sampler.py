"""A deterministic, resumable batch sampler that shards each global batch over ranks and micro-batches.

Epoch e visits the dataset in the order `torch.randperm(n, generator=Generator().manual_seed(seed + e))`
(or 0..n-1 without shuffling). Update s of the epoch uses the global batch G = order[s*B : (s+1)*B]
(B = train.batch_size; a last partial batch is dropped). G is cut into A*W equal micro-batches
(A = grad_accum, W = world size); rank r gets chunks a*W + r for a = 0..A-1, in that order.
So the union of all ranks' micro-batches of an update is exactly the single-process batch, whatever
the world size or accumulation, and a run can restart at any (epoch, update) position.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import Sampler


class ResumableBatchSampler(Sampler[list[int]]):
    """Yields this rank's micro-batches (lists of dataset indices) from a settable position."""

    def __init__(
        self,
        num_items: int,
        batch_size: int,
        grad_accum: int = 1,
        rank: int = 0,
        world_size: int = 1,
        seed: int = 0,
        shuffle: bool = True,
    ) -> None:
        if batch_size % (grad_accum * world_size):
            raise ValueError(
                f"train.batch_size={batch_size} must be divisible by grad_accum x world size = "
                f"{grad_accum} x {world_size}"
            )
        if num_items < batch_size:
            raise ValueError(f"the train split has {num_items} items, fewer than one batch of {batch_size}")
        self.num_items, self.batch_size, self.grad_accum = num_items, batch_size, grad_accum
        self.rank, self.world_size, self.seed, self.shuffle = rank, world_size, seed, shuffle
        self.micro_batch = batch_size // (grad_accum * world_size)
        self.epoch, self.start_step = 0, 0

    @property
    def steps_per_epoch(self) -> int:
        """Updates per epoch (full global batches)."""
        return self.num_items // self.batch_size

    def set_position(self, epoch: int, step_in_epoch: int) -> None:
        """The next iteration starts at update `step_in_epoch` of `epoch`."""
        if not 0 <= step_in_epoch <= self.steps_per_epoch:
            raise ValueError(f"step_in_epoch={step_in_epoch} outside 0..{self.steps_per_epoch}")
        self.epoch, self.start_step = epoch, step_in_epoch

    def epoch_order(self, epoch: int) -> list[int]:
        """The order in which epoch `epoch` visits the dataset."""
        if not self.shuffle:
            return list(range(self.num_items))
        generator = torch.Generator().manual_seed(self.seed + epoch)
        return torch.randperm(self.num_items, generator=generator).tolist()

    def __iter__(self) -> Iterator[list[int]]:
        order = self.epoch_order(self.epoch)
        m = self.micro_batch
        for step in range(self.start_step, self.steps_per_epoch):
            batch = order[step * self.batch_size : (step + 1) * self.batch_size]
            for accum in range(self.grad_accum):
                chunk = accum * self.world_size + self.rank
                yield batch[chunk * m : (chunk + 1) * m]

    def __len__(self) -> int:
        return (self.steps_per_epoch - self.start_step) * self.grad_accum
