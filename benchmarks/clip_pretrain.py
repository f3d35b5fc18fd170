"""One contrastive CLIP step (image + text forward, open_clip's ClipLoss, backward, AdamW step): images/s,
peak memory and achieved GFLOP/s against a square-matmul peak (2048x2048 fp32) measured in the same
process right before and after the timed steps (the larger of the two: this machine is shared).

Models: clipvil-rn-tiny and clipvil-vit-tiny at their native size and at 224x224, and RN50 at 224x224 (the
paper's CLIP), random weights, captions of 16 BPE tokens padded to 77. Each configuration runs in its own
subprocess so that its peak memory (CPU: the peak resident set `ru_maxrss`, minus the same process's peak
before the first step; CUDA: `max_memory_allocated`) is its own.

    .venv/bin/python benchmarks/clip_pretrain.py --out benchmarks/results/clip_pretrain.json
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.common import best_seconds, count_flops, matmul_peak_gflops, write_json

CONFIGS = [("clipvil-rn-tiny", None, 32), ("clipvil-rn-tiny", 224, 32), ("clipvil-vit-tiny", None, 32),
           ("clipvil-vit-tiny", 224, 32), ("RN50", 224, 16)]  # (model, image size or native, batch)


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def measure(model_name: str, size: int | None, batch: int, device: str, repeats: int) -> dict:
    """One configuration, in this process."""
    import open_clip
    from open_clip.loss import ClipLoss

    from clipvil.families.clip.model import create_clip

    torch.manual_seed(0)
    model = create_clip(model_name).to(device)
    native = open_clip.get_model_preprocess_cfg(model)["size"]
    native = native if isinstance(native, int) else int(native[0])  # ViTs give (h, w)
    if size is not None and size != native:
        model = open_clip.create_model(model_name, force_image_size=size).to(device)  # resized position tables
    side = size or native
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    loss_fn = ClipLoss()
    images = torch.randn(batch, 3, side, side, device=device)  # [B, 3, H, W]
    texts = torch.zeros(batch, 77, dtype=torch.long, device=device)  # [B, 77]
    texts[:, :16] = torch.randint(1, 49000, (batch, 16))

    def step() -> None:
        image, text, scale = model(images, texts)
        loss_fn(image, text, scale).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    def forward_backward() -> None:
        image, text, scale = model(images, texts)
        loss_fn(image, text, scale).backward()

    before = _rss_mb()
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    peaks = [matmul_peak_gflops(device=device)]  # right before and after the step: the same machine state
    seconds = best_seconds(step, repeats=repeats, warmup=1)
    peaks.append(matmul_peak_gflops(device=device))
    flops = count_flops(forward_backward)
    optimizer.zero_grad(set_to_none=True)
    peak = torch.cuda.max_memory_allocated() / 2**20 if device.startswith("cuda") else _rss_mb() - before
    return {"model": model_name, "image_size": side, "batch": batch, "step_seconds": seconds,
            "images_per_s": batch / seconds, "gflop_per_step": flops / 1e9, "gflops_achieved": flops / seconds / 1e9,
            "peak_memory_mb": peak, "params_m": sum(p.numel() for p in model.parameters()) / 1e6,
            "matmul_peak_gflops": max(peaks), "fraction_of_matmul_peak": flops / seconds / 1e9 / max(peaks)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="benchmarks/results/clip_pretrain.json")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--one", default=None, help=argparse.SUPPRESS)  # internal: one configuration as JSON
    args = parser.parse_args()
    if args.one:
        name, size, batch = json.loads(args.one)
        print(json.dumps(measure(name, size, batch, args.device, args.repeats)))
        return
    rows = []
    for name, size, batch in CONFIGS:
        done = subprocess.run([sys.executable, __file__, "--device", args.device, "--repeats", str(args.repeats),
                               "--one", json.dumps([name, size, batch])], capture_output=True, text=True, check=True)
        row = json.loads(done.stdout.strip().splitlines()[-1])
        rows.append(row)
        print(f"{name} @{row['image_size']}: {row['images_per_s']:.1f} img/s, {row['gflops_achieved']:.1f} GFLOP/s "
              f"({100 * row['fraction_of_matmul_peak']:.0f}% of the matmul peak), peak +{row['peak_memory_mb']:.0f} MB",
              flush=True)
    write_json(args.out, {"benchmark": "clip_pretrain", "device": args.device, "rows": rows})


if __name__ == "__main__":
    main()
