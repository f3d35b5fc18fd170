"""What one training step of a model costs, measured here: FLOPs, activation memory and seconds.

- FLOPs: `torch.utils.flop_counter.FlopCounterMode` around a forward *and* backward (the matmul / conv /
  attention kernels it knows; element-wise ops are not counted, so it is a slight under-count);
- activation memory: the bytes autograd keeps for backward (`saved_tensors_hooks`), each storage counted once
  and parameters left out — what grows with the batch; weights, gradients and optimizer states come on top;
- seconds: real updates on random inputs — forward + backward per sample, and the optimizer step apart (its
  cost does not grow with the batch); the first, counted update doubles as the warm-up.

FLOPs, activations and forward + backward seconds are per *sample*: measured at a small batch and divided by it
(FLOPs and activations are linear in the batch; seconds are extrapolated linearly, which over-estimates a GPU's
and roughly matches a CPU's scaling).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

LossFn = Callable[[int], torch.Tensor]  # batch size -> scalar loss of a fresh random batch (graph attached)


@dataclass(frozen=True)
class StepCost:
    """One sample's share of a training step, and the optimizer step, as measured on this machine."""

    flops: int  # forward + backward FLOPs per sample
    activation_bytes: int  # bytes saved for backward per sample (fp32 here)
    seconds: float  # wall seconds of forward + backward per sample
    optimizer_seconds: float  # wall seconds of one optimizer step (independent of the batch)
    batch: int  # batch the measurement ran at
    updates: int  # updates measured (the first one also counts FLOPs and warms up)
    threads: int  # torch intra-op threads used

    def seconds_per_update(self, batch_size: int) -> float:
        """A full update of `batch_size` samples: forward + backward scaled linearly, plus one optimizer step."""
        return self.seconds * batch_size + self.optimizer_seconds


def _storage_key(t: torch.Tensor) -> int:
    return t.untyped_storage().data_ptr()


def step_flops_and_activations(model: nn.Module, loss_fn: LossFn, batch: int = 1) -> tuple[int, int]:
    """(forward + backward FLOPs, bytes saved for backward) of one step at `batch`; gradients are left in
    the parameters (zero them before an optimizer step)."""
    params = {_storage_key(p) for p in model.parameters()}
    saved: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        if _storage_key(t) not in params:
            saved.setdefault(_storage_key(t), t.untyped_storage().nbytes())
        return t

    with FlopCounterMode(display=False) as counter:
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            loss = loss_fn(batch)
        loss.backward()
    return int(counter.get_total_flops()), sum(saved.values())


def measure_step(model: nn.Module, loss_fn: LossFn, optimizer: torch.optim.Optimizer, batch: int = 1,
                 max_updates: int = 3, budget_s: float = 4.0) -> StepCost:
    """One counted update (FLOPs, activations, and its time), then more timed updates while the whole
    measurement is under `budget_s` (at most `max_updates` in all); times are the fastest update's."""
    model.train()
    start = time.perf_counter()
    optimizer.zero_grad(set_to_none=True)
    flops, activations = step_flops_and_activations(model, loss_fn, batch)
    fb = [time.perf_counter() - start]
    t0 = time.perf_counter()
    optimizer.step()
    opt = [time.perf_counter() - t0]
    while len(fb) < max_updates and time.perf_counter() - start < budget_s:
        optimizer.zero_grad(set_to_none=True)
        t0 = time.perf_counter()
        loss_fn(batch).backward()
        t1 = time.perf_counter()
        optimizer.step()
        fb.append(t1 - t0)
        opt.append(time.perf_counter() - t1)
    return StepCost(flops=flops // batch, activation_bytes=activations // batch, seconds=min(fb) / batch,
                    optimizer_seconds=min(opt), batch=batch, updates=len(fb), threads=torch.get_num_threads())


__all__ = ["LossFn", "StepCost", "measure_step", "step_flops_and_activations"]
