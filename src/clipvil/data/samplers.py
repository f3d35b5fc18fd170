"""Deterministic, resumable batch samplers (plain and bucketed) that shard each global batch over ranks and
micro-batches.

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

    def epoch_batches(self, epoch: int) -> list[list[int]]:
        """The global batches of epoch `epoch`, in the order they are visited."""
        order = self.epoch_order(epoch)
        return [order[step * self.batch_size : (step + 1) * self.batch_size] for step in range(self.steps_per_epoch)]

    def __iter__(self) -> Iterator[list[int]]:
        batches, m = self.epoch_batches(self.epoch), self.micro_batch
        for step in range(self.start_step, self.steps_per_epoch):
            for accum in range(self.grad_accum):  # this rank's chunks of the global batch
                chunk = accum * self.world_size + self.rank
                yield batches[step][chunk * m : (chunk + 1) * m]

    def __len__(self) -> int:
        return (self.steps_per_epoch - self.start_step) * self.grad_accum


class BucketBatchSampler(ResumableBatchSampler):
    """Global batches drawn from one bucket each (length- or aspect-ratio-grouped), resumable like its parent.

    `buckets[i]` is item i's bucket id (e.g. a caption-length bin, or 0 = landscape / 1 = portrait grid).
    Epoch e: each bucket's items in a seeded shuffled order (seed + e) are cut into full global batches
    (a bucket's remainder is dropped), then the batches of all buckets are put in one seeded shuffled order.
    The order is a pure function of (seed, epoch), so `set_position` resumes mid-epoch exactly; the cut
    into ranks and micro-batches is the parent's, so DDP sees the single-process batch.
    """

    def __init__(
        self,
        buckets: list[int],
        batch_size: int,
        grad_accum: int = 1,
        rank: int = 0,
        world_size: int = 1,
        seed: int = 0,
        shuffle: bool = True,
    ) -> None:
        super().__init__(len(buckets), batch_size, grad_accum, rank, world_size, seed, shuffle)
        self.buckets = list(buckets)
        by_bucket: dict[int, int] = {}
        for b in self.buckets:
            by_bucket[b] = by_bucket.get(b, 0) + 1
        self._steps = sum(count // batch_size for count in by_bucket.values())
        if self._steps == 0:
            raise ValueError(f"no bucket holds a full batch of {batch_size} (bucket sizes {by_bucket})")

    @property
    def steps_per_epoch(self) -> int:
        """Updates per epoch: the full global batches of every bucket."""
        return self._steps

    def epoch_batches(self, epoch: int) -> list[list[int]]:
        """The global batches of epoch `epoch`, in the order they are visited."""
        generator = torch.Generator().manual_seed(self.seed + epoch)
        members: dict[int, list[int]] = {}
        for i, b in enumerate(self.buckets):
            members.setdefault(b, []).append(i)
        batches: list[list[int]] = []
        for b in sorted(members):
            items = members[b]
            if self.shuffle:
                items = [items[j] for j in torch.randperm(len(items), generator=generator).tolist()]
            full = len(items) // self.batch_size * self.batch_size
            batches += [items[s : s + self.batch_size] for s in range(0, full, self.batch_size)]
        if self.shuffle:
            batches = [batches[j] for j in torch.randperm(len(batches), generator=generator).tolist()]
        return batches
