"""Shared pieces of the benchmarks: a matmul peak measured in the same run, FLOP counting, JSON output.

Every benchmark reports side-by-side ratios measured in one process, because this machine is shared and
noisy: absolute numbers drift between runs, ratios much less.
"""

from __future__ import annotations

import json
import platform
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode


def best_seconds(fn: Callable[[], Any], repeats: int = 5, warmup: int = 1) -> float:
    """Fastest wall time of `repeats` calls of `fn` after `warmup` calls (the least noisy estimate)."""
    for _ in range(warmup):
        fn()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def matmul_peak_gflops(n: int = 2048, dtype: torch.dtype = torch.float32, device: str = "cpu") -> float:
    """Achieved GFLOP/s of a square n x n matmul: the practical peak the other numbers are compared with."""
    a = torch.randn(n, n, dtype=dtype, device=device)  # [n, n]
    b = torch.randn(n, n, dtype=dtype, device=device)  # [n, n]

    def run() -> None:
        torch.mm(a, b)
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    return 2 * n**3 / best_seconds(run, repeats=5) / 1e9


def count_flops(fn: Callable[[], Any]) -> int:
    """Floating-point operations of one call of `fn` (matmuls and convolutions, as torch counts them)."""
    with FlopCounterMode(display=False) as counter:
        fn()
    return int(counter.get_total_flops())


def environment() -> dict[str, Any]:
    """What the numbers were measured on."""
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cpu": platform.processor() or platform.machine(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }


def write_json(path: str | Path, payload: dict[str, Any]) -> None:
    """Writes the benchmark result (with the environment) and prints it."""
    payload = {"environment": environment(), **payload}
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(payload, indent=2) + "\n")
    print(json.dumps(payload, indent=2))
