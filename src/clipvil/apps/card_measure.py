"""What one training step of a model costs, measured here: FLOPs, activation memory and seconds.

- FLOPs: `torch.utils.flop_counter.FlopCounterMode` around a forward *and* backward (the matmul / conv /
  attention kernels it knows, and the fused LSTM kernels through `register_rnn_flops` — torch's counter
  otherwise counts them as 0; element-wise ops are not counted, so it is a slight under-count);
- activation memory: the bytes autograd keeps for backward (`saved_tensors_hooks`), each storage counted once
  and parameters left out — what grows with the batch; weights, gradients and optimizer states come on top
  (the optimizer states are measured too: the bytes of their tensors after a step);
- seconds: *clean* updates on random inputs, timed apart from the counted one. The counted update runs under
  the FLOP counter and the saved-tensor hooks (slower) and, with its optimizer step, doubles as the warm-up
  (allocations, lazy optimizer states); then at least one clean update is timed, more while under the time
  budget, and the fastest is kept — forward + backward per sample, and the optimizer step apart (its cost
  does not grow with the batch).

FLOPs, activations and forward + backward seconds are per *sample*: measured at a small batch and divided by it
(FLOPs and activations are linear in the batch; seconds are extrapolated linearly, which over-estimates a GPU's
and roughly matches a CPU's scaling). Evaluation-only steps (`forward_only`) count the forward under no_grad.

On a shared machine the seconds describe the machine *as it was*: OpenMP threads competing with other work
slow a step down far more than in proportion (measured: an MCAN-small update went from 0.65 s to 4-13 s with 2
threads beside three busy processes on 2 cores; 1 thread degrades gracefully), so `StepCost.load` records
the 1-minute load average next to the threads used.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode, flop_registry, register_flop_formula

LossFn = Callable[[int], torch.Tensor]  # batch size -> scalar loss of a fresh random batch (graph attached)


@dataclass(frozen=True)
class StepCost:
    """One sample's share of a training step, and the optimizer step, as measured on this machine."""

    flops: int  # forward + backward FLOPs per sample (forward only when forward_only)
    activation_bytes: int  # bytes saved for backward per sample (fp32 here; 0 when forward_only)
    seconds: float  # wall seconds of forward + backward per sample (the fastest clean update)
    optimizer_seconds: float  # wall seconds of one step of every optimizer (independent of the batch)
    batch: int  # batch the measurement ran at
    updates: int  # clean updates timed (the counted update is not one of them)
    threads: int  # torch intra-op threads used
    optimizer_state_bytes: int = 0  # bytes of the optimizers' state tensors after a step (moments, momenta)
    counted_seconds: float = 0.0  # wall seconds of the counted update per sample (under the counters; not used)
    device: str = "cpu"  # where the seconds were measured
    load: float = 0.0  # 1-minute load average of the machine when the measurement ended (CPU runs)
    forward_only: bool = False  # an evaluation step: forward under no_grad, no optimizer

    def seconds_per_update(self, batch_size: int) -> float:
        """A full update of `batch_size` samples: forward + backward scaled linearly, plus one optimizer step."""
        return self.seconds * batch_size + self.optimizer_seconds


def _rnn_flops(input_shape: Any, weights: Any) -> int:
    """2 x rows x the elements of every weight matrix: the matrix products of each step, row, layer and
    direction (input [T, B, I] or packed [sum(batch_sizes), I]; biases and gate element-wise ops left out)."""
    rows = int(np.prod(input_shape[:-1]))
    return 2 * rows * sum(int(np.prod(w)) for w in weights if w is not None and len(w) == 2)


def register_rnn_flops() -> None:
    """FLOP formulas for the fused LSTM kernels torch's counter does not know (CPU: aten.mkldnn_rnn_layer, one
    layer and direction per call; CUDA: aten._cudnn_rnn); backward = grad-input + grad-weight, twice the
    forward. Idempotent."""
    aten = torch.ops.aten

    def mkldnn_forward(input, weight0, weight1, *args: Any, out_shape: Any = None, **kwargs: Any) -> int:
        return _rnn_flops(input, [weight0, weight1])

    def mkldnn_backward(input, weight1, weight2, *args: Any, out_shape: Any = None, **kwargs: Any) -> int:
        return 2 * _rnn_flops(input, [weight1, weight2])

    def cudnn_forward(input, weight, *args: Any, out_shape: Any = None, **kwargs: Any) -> int:
        return _rnn_flops(input, weight)

    def cudnn_backward(input, weight, *args: Any, out_shape: Any = None, **kwargs: Any) -> int:
        return 2 * _rnn_flops(input, weight)

    for name, formula in (("mkldnn_rnn_layer", mkldnn_forward), ("mkldnn_rnn_layer_backward", mkldnn_backward),
                          ("_cudnn_rnn", cudnn_forward), ("_cudnn_rnn_backward", cudnn_backward)):
        op = getattr(aten, name, None)
        if op is not None and op not in flop_registry:
            register_flop_formula(op)(formula)


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

    register_rnn_flops()
    with FlopCounterMode(display=False) as counter:
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            loss = loss_fn(batch)
        loss.backward()
    return int(counter.get_total_flops()), sum(saved.values())


def forward_flops(loss_fn: LossFn, batch: int = 1) -> int:
    """FLOPs of one forward at `batch` under no_grad (an evaluation step)."""
    register_rnn_flops()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        loss_fn(batch)
    return int(counter.get_total_flops())


def optimizer_state_bytes(optimizers: Sequence[torch.optim.Optimizer]) -> int:
    """Bytes of the optimizers' per-parameter state tensors (scalar step counters left out)."""
    return sum(t.numel() * t.element_size() for opt in optimizers for state in opt.state.values()
               for t in state.values() if torch.is_tensor(t) and t.dim() > 0)


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize(device)


def _load() -> float:
    try:
        return os.getloadavg()[0]
    except OSError:  # not available on every platform
        return 0.0


def measure_step(model: nn.Module, loss_fn: LossFn,
                 optimizers: torch.optim.Optimizer | Sequence[torch.optim.Optimizer] = (), batch: int = 1,
                 max_updates: int = 3, budget_s: float = 4.0, device: str = "cpu",
                 forward_only: bool = False) -> StepCost:
    """One counted update (FLOPs, activations; with its optimizer step, the warm-up), then clean timed updates:
    at least one, more while their total is under `budget_s` (at most `max_updates`); times are the fastest
    clean update's. The model must already be on `device`; random inputs are made there (it is the default
    device while `loss_fn` runs). `forward_only`: forward passes under no_grad, no optimizer."""
    opts = [optimizers] if isinstance(optimizers, torch.optim.Optimizer) else list(optimizers)
    model.eval() if forward_only else model.train()
    place = torch.device(device) if device != "cpu" else nullcontext()
    with place:
        t0 = time.perf_counter()
        if forward_only:
            flops, activations = forward_flops(loss_fn, batch), 0
        else:
            for opt in opts:
                opt.zero_grad(set_to_none=True)
            flops, activations = step_flops_and_activations(model, loss_fn, batch)
            for opt in opts:
                opt.step()
        _sync(device)
        counted = time.perf_counter() - t0
        fb, step = _timed_updates(loss_fn, opts, batch, max_updates, budget_s, device, forward_only)
    return StepCost(flops=flops // batch, activation_bytes=activations // batch, seconds=min(fb) / batch,
                    optimizer_seconds=min(step), batch=batch, updates=len(fb), threads=torch.get_num_threads(),
                    optimizer_state_bytes=optimizer_state_bytes(opts), counted_seconds=counted / batch,
                    device=device, load=_load(), forward_only=forward_only)


def _timed_updates(loss_fn: LossFn, opts: list[torch.optim.Optimizer], batch: int, max_updates: int,
                   budget_s: float, device: str, forward_only: bool) -> tuple[list[float], list[float]]:
    """([forward (+ backward) seconds], [optimizer seconds]) of clean updates, at least one."""
    fb: list[float] = []
    step: list[float] = []
    while not fb or (len(fb) < max_updates and sum(fb) + sum(step) < budget_s):
        t0 = time.perf_counter()
        if forward_only:
            with torch.no_grad():
                loss_fn(batch)
        else:
            for opt in opts:
                opt.zero_grad(set_to_none=True)
            loss_fn(batch).backward()
        _sync(device)
        t1 = time.perf_counter()
        for opt in opts:
            opt.step()
        _sync(device)
        fb.append(t1 - t0)
        step.append(time.perf_counter() - t1)
    return fb, step


__all__ = ["LossFn", "StepCost", "forward_flops", "measure_step", "optimizer_state_bytes",
           "step_flops_and_activations"]
