"""Training-step speed and memory of the VQA heads (MCAN-small, Pythia) on cached-grid-shaped inputs.

    .venv/bin/python benchmarks/train_vqa.py --out benchmarks/results/train_vqa.json [--device cuda]

One step = forward + BCE-with-logits on soft scores + backward + optimizer step (Adam as in mcan-vqa for
MCAN, Adamax as in MMF for Pythia), on random inputs shaped like the paper's cached CLIP RN50 grids:
18x31 = 558 cells of 2048-d, 14 question tokens (trailing padding), 3129 answers.

Each (model, precision) runs in its own subprocess so that its peak memory is its own: on CPU the rise of
ru_maxrss over the process's high-water mark before the first step (activations + gradients + optimizer
state; torch allocations are invisible to tracemalloc), on CUDA torch.cuda.max_memory_allocated. Each
subprocess also measures the matmul peak just before and just after its steps and keeps the better, so the
achieved GFLOP/s is compared with a peak taken in the same process (the machine is shared and noisy;
ratios hold better than absolutes).
The bf16 autocast variant runs only where a bf16 matmul is faster than an fp32 one on the device.

Two rows about the feature store the training reads (same run): samples/s of random training batches read from
an on-disk store of real-size grids (18x31x2048 fp16, the default lazy reads) vs the same store preloaded, and
the time to open a store of 100k entries with its consolidated index vs scanning every part file
(`benchmarks/feature_store.py` measures the store alone, a million entries included).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

if __package__ in (None, ""):  # run as a script: make `benchmarks` and `clipvil` importable from the checkout
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import best_seconds, count_flops, matmul_peak_gflops, write_json
from clipvil.families.vqa import MCAN, MCANConfig, Pythia, PythiaConfig
from clipvil.types import GridFeatures

MODELS = ("mcan_small", "pythia")
PRECISIONS = ("fp32", "bf16_autocast")
HW = (18, 31)  # the paper's VQA grid: 600x1000 input at stride 32


def _build(name: str, args: argparse.Namespace) -> tuple[torch.nn.Module, torch.optim.Optimizer]:
    """The model on args.device and its reference optimizer (mcan-vqa: Adam; MMF Pythia: Adamax)."""
    sizes = {"grid_dim": args.grid_dim, "vocab_size": args.vocab, "n_answers": args.answers}
    if name == "mcan_small":
        model = MCAN(MCANConfig.preset("small"), **sizes).to(args.device)
        return model, torch.optim.Adam(model.parameters(), lr=1e-4, betas=(0.9, 0.98), eps=1e-9)
    model = Pythia(PythiaConfig.preset("pythia"), **sizes).to(args.device)
    return model, torch.optim.Adamax(model.parameters(), lr=1e-2, eps=1e-8)


def _inputs(args: argparse.Namespace, device: str) -> tuple[GridFeatures, torch.Tensor, torch.Tensor]:
    b, n = args.batch, HW[0] * HW[1]
    feats = torch.randn(b, n, args.grid_dim, device=device).relu()  # [B, N, C] ResNet-like (non-negative)
    grid = GridFeatures(feats, torch.ones(b, n, dtype=torch.bool, device=device), HW)
    tokens = torch.randint(1, args.vocab, (b, args.tokens), device=device)  # [B, T]
    lengths = torch.randint(4, args.tokens + 1, (b, 1), device=device)  # [B, 1]
    tokens = tokens.masked_fill(
        torch.arange(args.tokens, device=device) >= lengths, 0
    )  # [B, T] trailing pads
    targets = torch.zeros(b, args.answers, device=device)  # [B, A] soft scores
    targets[torch.arange(b), torch.randint(0, args.answers, (b,))] = 1.0
    return grid, tokens, targets


def _memory_mark(device: str) -> float:
    """MiB: the CUDA allocator's peak (after a reset), or this process's RSS high-water mark."""
    if device.startswith("cuda"):
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def worker(args: argparse.Namespace) -> dict[str, Any]:
    """Times one (model, precision) training step in this process; returns its row of the result."""
    torch.manual_seed(0)
    device, dtype = args.device, torch.bfloat16 if args.precision == "bf16_autocast" else torch.float32
    model, optimizer = _build(args.model, args)
    model.train()
    grid, tokens, targets = _inputs(args, device)

    def step() -> None:
        with torch.autocast(device.split(":")[0], dtype=dtype, enabled=dtype != torch.float32):
            logits = model(grid, tokens)  # [B, A]
        loss = F.binary_cross_entropy_with_logits(logits.float(), targets) * args.answers
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    peak_n = 2048 if dtype == torch.float32 or device.startswith("cuda") else args.bf16_peak_n
    peak_before = matmul_peak_gflops(peak_n, dtype, device)
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    before = _memory_mark(device)
    flops = count_flops(step)  # the first step doubles as warm-up (it also creates the optimizer state)
    seconds = best_seconds(step, repeats=args.repeats, warmup=args.warmup - 1)
    peak_mib = _memory_mark(device)
    peak = max(peak_before, matmul_peak_gflops(peak_n, dtype, device))  # the better of before/after the steps
    return {
        "model": args.model,
        "precision": args.precision,
        "params": sum(p.numel() for p in model.parameters()),
        "step_seconds": seconds,
        "samples_per_second": args.batch / seconds,
        "gflop_per_step": flops / 1e9,
        "achieved_gflops": flops / seconds / 1e9,
        "matmul_peak_gflops_same_process": peak,
        "fraction_of_matmul_peak": flops / seconds / 1e9 / peak,
        "memory_mib": {"before_first_step": before, "peak": peak_mib, "step_rise": peak_mib - before}
        if not device.startswith("cuda")
        else {"model_and_inputs": before, "peak_allocated": peak_mib},
    }


def _run_worker(args: argparse.Namespace, model: str, precision: str) -> dict[str, Any]:
    cmd = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--worker",
        "--model",
        model,
        "--precision",
        precision,
    ]
    for key in (
        "device",
        "batch",
        "grid_dim",
        "tokens",
        "answers",
        "vocab",
        "repeats",
        "warmup",
        "bf16_peak_n",
    ):
        cmd += [f"--{key.replace('_', '-')}", str(getattr(args, key))]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"benchmark worker {model}/{precision} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> None:
    args = _parse(argv)
    if args.worker:
        print(json.dumps(worker(args)))
        return
    on_cuda = args.device.startswith("cuda")
    peaks = {
        "fp32": matmul_peak_gflops(2048, torch.float32, args.device),
        "bf16": matmul_peak_gflops(2048 if on_cuda else args.bf16_peak_n, torch.bfloat16, args.device),
    }
    runs: list[dict[str, Any]] = []
    for model in MODELS:
        for precision in PRECISIONS:
            if precision == "bf16_autocast" and peaks["bf16"] <= peaks["fp32"]:
                reason = (
                    f"bf16 matmul peak {peaks['bf16']:.1f} <= fp32 {peaks['fp32']:.1f} GFLOP/s on this device"
                )
                runs.append({"model": model, "precision": precision, "skipped": reason})
                continue
            runs.append(_run_worker(args, model, precision))
            print(
                f"{model:>10} {precision:>13}: {runs[-1]['samples_per_second']:.2f} samples/s",
                file=sys.stderr,
            )
    write_json(
        args.out,
        {
            "benchmark": "train_vqa",
            "settings": _settings(args),
            "matmul_peak_gflops": peaks,
            "runs": runs,
            "ratios": _ratios(runs),
            "store": _store_rows(args),
        },
    )


def _store_rows(args: argparse.Namespace) -> dict[str, Any]:
    """Lazy vs preloaded batch reads of real-size grids, and store opening with vs without the index."""
    import tempfile

    import numpy as np

    from benchmarks.feature_store import make_store, read_rate
    from clipvil.features.index import INDEX_FILE
    from clipvil.features.store import FeatureStore, GridBatch, open_for_writing, write_part

    cells, out = HW[0] * HW[1], {}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "grids"
        open_for_writing(root, {"encoder": "synthetic", "dim": args.grid_dim})
        rng = np.random.default_rng(0)
        for start in range(0, args.store_images, 16):
            ids = [f"img{i:06d}" for i in range(start, min(start + 16, args.store_images))]
            feats = rng.standard_normal((len(ids), cells, args.grid_dim)).astype(np.float16)  # [n, N, C]
            write_part(root, [GridBatch(ids, feats, np.ones((len(ids), cells), bool), HW, None)], [])
        FeatureStore(root).write_index()
        ids = FeatureStore(root).ids
        lazy = read_rate(FeatureStore(root), ids, 20, args.batch)
        eager = read_rate(FeatureStore(root).preload(), ids, 20, args.batch)
        out["grid_store"] = {"images": args.store_images, "grid": f"{HW[0]}x{HW[1]}x{args.grid_dim} fp16",
                             "batch": args.batch, "read_samples_per_s_on_disk": round(lazy, 1),
                             "read_samples_per_s_preloaded": round(eager, 1),
                             "preloaded_over_lazy": round(eager / lazy, 2)}
        index_root = Path(tmp) / "index"
        make_store(index_root, args.index_images, 16)
        with_index = best_seconds(lambda: FeatureStore(index_root), repeats=3)
        (index_root / INDEX_FILE).unlink()
        scanning = best_seconds(lambda: FeatureStore(index_root), repeats=1, warmup=0)
        out["open_store"] = {"entries": args.index_images, "parts": args.index_images // 16,
                             "seconds_with_index": round(with_index, 4), "seconds_scanning_parts": round(scanning, 3),
                             "speedup": round(scanning / with_index, 1)}
    return out


def _ratios(runs: list[dict[str, Any]]) -> dict[str, float]:
    speed = {(r["model"], r["precision"]): r["samples_per_second"] for r in runs if "skipped" not in r}
    ratios = {}
    if ("pythia", "fp32") in speed and ("mcan_small", "fp32") in speed:
        ratios["pythia_over_mcan_small_samples_per_s_fp32"] = (
            speed["pythia", "fp32"] / speed["mcan_small", "fp32"]
        )
    for model in MODELS:
        if (model, "bf16_autocast") in speed and (model, "fp32") in speed:
            ratios[f"{model}_bf16_over_fp32"] = speed[model, "bf16_autocast"] / speed[model, "fp32"]
    return ratios


def _settings(args: argparse.Namespace) -> dict[str, Any]:
    keys = ("device", "batch", "grid_dim", "tokens", "answers", "vocab", "bf16_peak_n")
    settings = {k: getattr(args, k) for k in keys}
    settings |= {
        "cells": HW[0] * HW[1],
        "hw": HW,
        "warmup_steps": args.warmup,
        "timed_steps": args.repeats,
        "timing": "fastest of the timed steps",
        "flops": "torch FlopCounterMode over forward+backward",
    }
    if args.batch != 64:
        settings["note"] = (
            f"batch {args.batch} instead of the paper's 64 to keep the run short on this device"
        )
    return settings


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="benchmarks/results/train_vqa.json")
    parser.add_argument("--store-images", type=int, default=128, help="real-size grids in the lazy-read store")
    parser.add_argument("--index-images", type=int, default=100_000,
                        help="entries of the store opened with/without index")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch", type=int, default=None, help="default: 64 on CUDA, 8 on CPU")
    parser.add_argument("--grid-dim", type=int, default=2048)
    parser.add_argument("--tokens", type=int, default=14)
    parser.add_argument("--answers", type=int, default=3129)
    parser.add_argument("--vocab", type=int, default=20000)
    parser.add_argument("--repeats", type=int, default=None, help="timed steps (default: 10 CUDA, 3 CPU)")
    parser.add_argument(
        "--warmup", type=int, default=None, help="untimed steps, >= 1 (default: 3 CUDA, 1 CPU)"
    )
    parser.add_argument("--bf16-peak-n", type=int, default=512, help="matmul size for the bf16 peak off CUDA")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--model", choices=MODELS, help=argparse.SUPPRESS)
    parser.add_argument("--precision", choices=PRECISIONS, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    on_cuda = args.device.startswith("cuda")
    args.batch = args.batch or (64 if on_cuda else 8)
    args.repeats = args.repeats or (10 if on_cuda else 3)
    args.warmup = max(1, args.warmup or (3 if on_cuda else 1))
    return args


if __name__ == "__main__":
    main()
