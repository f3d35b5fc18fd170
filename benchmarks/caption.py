"""Caption decoding speed of the paper's Transformer captioner: cached (incremental) vs recomputed prefix.

    .venv/bin/python benchmarks/caption.py --out benchmarks/results/caption.json [--device cuda]

The paper preset (6+6 layers, d 512) with random weights decodes a batch of random 14x14x2048 grids (CLIP
RN50 at 448x448) with greedy and beam-3 search through `clipvil.nn.decoding`, two ways in one process:
- incremental: the captioner itself as an `IncrementalDecoder` (keys/values cached per decoder layer, the
  memory's keys/values projected once per image and shared by its beams);
- recompute: what self-critical.pytorch's TransformerModel.core does, re-running the decoder over the whole
  prefix at every step (memory repeated per beam and re-projected in every layer each step, the output
  layer on the last position only).
Random weights would end captions at arbitrary steps, so eos is made impossible (its output bias set to
-1e4) and every caption runs the full `max_len` steps: both decoders do the same, known amount of work,
and they must produce the same tokens (checked). Decoding is timed apart from encoding (encoding the grid
is the same for both); captions/s end to end adds the two. The ratios are the claim: absolute numbers move
with the machine's load.

    .venv/bin/python benchmarks/caption.py --part scst [--out benchmarks/results/caption_scst.json]

The SCST step of `clipvil.families.caption.task` split into its parts, timed side by side in one run (median of the
timed steps): the greedy baseline (eval mode, no grad), sampling `--samples` captions per image with the
autograd graph, the CIDEr-D reward of samples + greedy captions (numpy, CPU; df of a random 2000-image
corpus, 5 random references per image), and the backward of the SCST loss. Same model and grids as above,
eos suppressed, so every caption is `max_len` tokens: the worst case of a step.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

if __package__ in (None, ""):  # run as a script: make `benchmarks` and `clipvil` importable from the checkout
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import best_seconds, write_json
from clipvil.families.caption.model import CaptionerConfig, CaptionMemory, TransformerCaptioner
from clipvil.families.caption.reward import CaptionReward, scst_baseline, scst_loss, sentences
from clipvil.nn.decoding import DecodeOutput, beam_search, greedy_decode, sample_decode
from clipvil.types import GridFeatures

HW = (14, 14)  # 448x448 input at stride 32
BOS, EOS = 1, 2  # CaptionVocab ids
VOCAB = 9487 + 4  # COCO Karpathy train words seen > 5 times (self-critical.pytorch's cocotalk) + 4 specials


class RecomputeDecoder:
    """The captioner decoded without a cache: every step runs the decoder over the whole prefix."""

    def __init__(self, model: TransformerCaptioner) -> None:
        self.model = model

    def init_state(self, context: CaptionMemory, expand: int) -> tuple[torch.Tensor, ...]:
        memory = context.memory.repeat_interleave(expand, 0)  # [M, N, d]
        mask = context.mask.repeat_interleave(expand, 0)  # [M, N]
        return memory, mask, torch.zeros(memory.shape[0], 0, dtype=torch.long, device=memory.device)

    def step(self, tokens: torch.Tensor, state: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, Any]:
        memory, mask, prefix = state
        prefix = torch.cat([prefix, tokens[:, None]], dim=1)  # [M, t+1]
        x = self.model.tgt_embed(prefix)  # [M, t+1, d]
        for layer in self.model.decoder.layers:
            x, _ = layer(x, None, layer.src_attn.keys_values(memory), mask)  # [M, t+1, d]
        logp = self.model.generator(self.model.decoder.norm(x[:, -1]))  # [M, V]
        return logp, (memory, mask, prefix)

    def reorder_state(self, state: tuple[torch.Tensor, ...], index: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return tuple(x.index_select(0, index) for x in state)


def _decode(decoder: Any, context: CaptionMemory, batch: int, mode: str, max_len: int) -> DecodeOutput:
    if mode == "greedy":
        return greedy_decode(decoder, context, batch, bos=BOS, eos=EOS, max_len=max_len)
    return beam_search(decoder, context, batch, beam_size=3, bos=BOS, eos=EOS, max_len=max_len)


def main(argv: list[str] | None = None) -> None:
    args = _parse(argv)
    torch.manual_seed(0)
    device = args.device
    model = TransformerCaptioner(CaptionerConfig.preset("paper"), grid_dim=2048, vocab_size=VOCAB).to(device)
    model.eval()
    with torch.no_grad():
        model.generator.proj.bias[EOS] = -1e4  # every caption runs max_len steps (see the docstring)
    n = HW[0] * HW[1]
    feats = torch.randn(args.batch, n, 2048, device=device).relu()  # [B, N, C] ResNet-like (non-negative)
    grid = GridFeatures(feats, torch.ones(args.batch, n, dtype=torch.bool, device=device), HW)
    if args.part == "scst":
        settings = {**_settings(args, model), "warmup_runs": max(args.warmup, 1), "timed_runs": args.repeats,
                    "timing": "median of the timed steps, fp32"}
        write_json(args.out, {"benchmark": "caption_scst", "settings": settings,
                              "scst": scst_split(model, grid, args)})
        return
    _decode_part(args, model, grid)


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def scst_split(model: TransformerCaptioner, grid: GridFeatures, args: argparse.Namespace) -> dict[str, Any]:
    """Median seconds of each part of an SCST step (greedy baseline, sampling, reward, backward)."""
    rng = np.random.default_rng(0)
    b, k, device = grid.batch_size, args.samples, args.device

    def sentence() -> tuple[int, ...]:
        return tuple((rng.zipf(1.3, size=int(rng.integers(8, 17))) % (VOCAB - 4) + 4).tolist()) + (EOS,)

    corpus = [[sentence() for _ in range(5)] for _ in range(2000)]
    refs = corpus[:b]  # the batch images are training images, as in SCST
    reward = CaptionReward.from_corpus(corpus)
    common = {"bos": BOS, "eos": EOS, "max_len": args.max_len}
    parts: dict[str, list[float]] = {"greedy": [], "sample": [], "reward": [], "backward": []}
    warmup = max(args.warmup, 1)  # the first step pays one-off allocations
    for step in range(warmup + args.repeats):
        t0 = time.perf_counter()
        model.eval()
        with torch.no_grad():
            greedy = greedy_decode(model, model.encode(grid), b, **common)
        model.train()
        _sync(device)
        t1 = time.perf_counter()
        samples = sample_decode(model, model.encode(grid), b, n=k, temperature=1.0, **common)
        _sync(device)
        t2 = time.perf_counter()
        scores = reward.score(sentences(samples.tokens, samples.lengths) + sentences(greedy.tokens, greedy.lengths),
                              refs, np.concatenate([np.repeat(np.arange(b), k), np.arange(b)]))
        rewards = scores[: b * k].reshape(b, k)
        advantage = torch.from_numpy((rewards - scst_baseline(rewards, scores[b * k:])).reshape(-1)).to(device)
        loss = scst_loss(samples.logprobs, samples.mask, advantage)
        t3 = time.perf_counter()
        model.zero_grad(set_to_none=True)
        loss.backward()
        _sync(device)
        t4 = time.perf_counter()
        if step >= warmup:
            for name, seconds in zip(parts, (t1 - t0, t2 - t1, t3 - t2, t4 - t3)):
                parts[name].append(seconds)
    model.eval()
    median = {name: statistics.median(times) for name, times in parts.items()}
    total = sum(median.values())
    return {"images": b, "samples_per_image": k, "timed_steps": args.repeats,
            "seconds": median, "fraction_of_step": {n: v / total for n, v in median.items()},
            "step_seconds": total, "modes": "greedy in eval mode under no_grad; sampling in train mode "
            "(dropout) with the autograd graph"}


def _decode_part(args: argparse.Namespace, model: TransformerCaptioner, grid: GridFeatures) -> None:
    device = args.device

    def sync() -> None:
        _sync(device)

    with torch.inference_mode():
        context = model.encode(grid)
        encode_s = best_seconds(lambda: (model.encode(grid), sync()), args.repeats, args.warmup)
        runs: list[dict[str, Any]] = []
        outputs: dict[tuple[str, str], torch.Tensor] = {}
        for mode in ("greedy", "beam3"):
            for name, decoder in (("incremental", model), ("recompute", RecomputeDecoder(model))):
                outputs[mode, name] = _decode(decoder, context, args.batch, mode, args.max_len).tokens

                def run(decoder: Any = decoder, mode: str = mode) -> None:
                    _decode(decoder, context, args.batch, mode, args.max_len)
                    sync()

                seconds = best_seconds(run, args.repeats, args.warmup)
                runs.append(
                    {
                        "mode": mode,
                        "decoder": name,
                        "decode_seconds": seconds,
                        "decode_captions_per_second": args.batch / seconds,
                        "end_to_end_captions_per_second": args.batch / (seconds + encode_s),
                    }
                )
                print(
                    f"{mode:>6} {name:>11}: {args.batch / seconds:.2f} captions/s (decode)", file=sys.stderr
                )
    same = {
        m: bool(torch.equal(outputs[m, "incremental"], outputs[m, "recompute"])) for m in ("greedy", "beam3")
    }
    write_json(
        args.out,
        {
            "benchmark": "caption",
            "settings": _settings(args, model),
            "encode_seconds": encode_s,
            "runs": runs,
            "same_tokens_incremental_vs_recompute": same,
            "ratios": _ratios(runs),
        },
    )


def _ratios(runs: list[dict[str, Any]]) -> dict[str, float]:
    speed = {(r["mode"], r["decoder"]): r["decode_captions_per_second"] for r in runs}
    ends = {(r["mode"], r["decoder"]): r["end_to_end_captions_per_second"] for r in runs}
    return {
        "greedy_incremental_over_recompute_decode": speed["greedy", "incremental"]
        / speed["greedy", "recompute"],
        "beam3_incremental_over_recompute_decode": speed["beam3", "incremental"]
        / speed["beam3", "recompute"],
        "greedy_incremental_over_recompute_end_to_end": ends["greedy", "incremental"]
        / ends["greedy", "recompute"],
        "beam3_incremental_over_recompute_end_to_end": ends["beam3", "incremental"]
        / ends["beam3", "recompute"],
        "greedy_over_beam3_incremental_decode": speed["greedy", "incremental"]
        / speed["beam3", "incremental"],
    }


def _settings(args: argparse.Namespace, model: TransformerCaptioner) -> dict[str, Any]:
    settings = {
        "device": args.device,
        "batch": args.batch,
        "max_len": args.max_len,
        "hw": HW,
        "grid_dim": 2048,
        "vocab": VOCAB,
        "preset": "paper",
        "params": sum(p.numel() for p in model.parameters()),
        "warmup_runs": args.warmup + 1,
        "timed_runs": args.repeats,
        "timing": "fastest of the timed runs, torch.inference_mode, fp32",
        "captions": "eos suppressed: every caption is max_len tokens",
    }
    if args.batch != 50:
        settings["note"] = f"batch {args.batch} (self-critical.pytorch evaluates 50 images at a time)"
    return settings


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--part", choices=["decode", "scst"], default="decode",
                        help="decode: cached vs recomputed decoding; scst: the parts of an SCST step")
    parser.add_argument("--out", default=None,
                        help="default benchmarks/results/caption.json (decode) or caption_scst.json (scst)")
    parser.add_argument("--samples", type=int, default=5, help="scst: sampled captions per image (paper 5)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch", type=int, default=None, help="images per batch (default: 50 CUDA, 4 CPU)")
    parser.add_argument("--max-len", type=int, default=None,
                        help="decoded tokens per caption (default: decode 17 = 16 words + eos; scst 20, as trained)")
    parser.add_argument("--repeats", type=int, default=None, help="timed runs (default: 10 CUDA, 2 CPU)")
    parser.add_argument(
        "--warmup", type=int, default=0, help="untimed runs before timing (the token check already ran once)"
    )
    args = parser.parse_args(argv)
    args.max_len = args.max_len or (17 if args.part == "decode" else 20)
    args.out = args.out or f"benchmarks/results/{'caption' if args.part == 'decode' else 'caption_scst'}.json"
    on_cuda = args.device.startswith("cuda")
    args.batch = args.batch or (50 if on_cuda else 4)
    args.repeats = args.repeats or (10 if on_cuda else 2)
    return args


if __name__ == "__main__":
    main()
