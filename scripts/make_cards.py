"""Writes docs/cards.md: the card (`clipvil card`) of every paper recipe and full-size clipvil recipe, one table
per family + the cards.

    .venv/bin/python scripts/make_cards.py [--out docs/cards.md] [--threads 1] [--only vqa,caption]

Recipes are the non-underscore YAML files of configs/{vqa, caption, grounding, vln, pretrain, finetune, clip,
classify, retrieval}; the CPU demos are left out (`*synthetic*`, `configs/vln/navworld_*`, and the folders
configs/demo and configs/study, which are not read). Recipes whose phases cost the same share one measurement
(e.g. RN50 and RN101 grids are both 18x31x2048). Costs are measured on this machine; the document says which,
with the threads and the load average.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from benchmarks.common import write_json

from clipvil.apps.card import Card, make_card, to_markdown
from clipvil.apps.card_measure import StepCost

FAMILIES: dict[str, str] = {
    "vqa": "VQA heads over cached CLIP grids (configs/vqa): the visual towers are frozen (features cached), only "
           "the heads are counted; the question vocabulary is assumed to be 20,000 words (it sizes only the word "
           "embedding).",
    "caption": "The Transformer captioner over cached grids (configs/caption): cross-entropy, then self-critical "
               "training (sampled captions + a greedy baseline per image, decoded to the recipe's maximum length: "
               "an upper bound); the tower is frozen; the COCO caption vocabulary size is an assumption.",
    "grounding": "The grid grounding head over cached grids (configs/grounding); the tower is frozen; the expression "
                 "vocabulary size is an assumption.",
    "vln": "Navigation agents over cached view features (configs/vln): see each card's phases for what one "
           "training sample (an episode) stands for. The agents are small LSTMs stepped one decision at a time "
           "beside an environment, so a GPU runs them far below its peak: the FLOP-based GPU-hours are a lower "
           "bound, and the hours measured here (s / update x updates) are the better guide.",
    "pretrain": "CLIP-ViL_p pre-training (configs/pretrain): the CLIP tower trained end to end at the recipe's image "
                "size + the cross-modal transformer.",
    "finetune": "CLIP-ViL_p fine-tuning (configs/finetune): the tower end to end + the cross-modal transformer + "
                "the task head.",
    "clip": "Contrastive CLIP training (configs/clip): both towers at their input size, the batch as the negatives; "
            "frozen parts count their forward.",
    "classify": "The supervised ImageNet-style baseline (configs/classify): the tower end to end.",
    "retrieval": "Evaluation-only zero-shot recipes (configs/retrieval): no training; forward FLOPs per test sample "
                 "and of the whole test set.",
}
SKIP_DOC = ("Left out: the CPU demos and smoke recipes — every `*synthetic*` recipe, `configs/vln/navworld_*`, "
            "`configs/demo/`, `configs/study/` (they train on the embedded worlds in minutes; their cards would "
            "describe toy sizes).")


def recipes(only: list[str] | None = None) -> dict[str, list[Path]]:
    """{family: recipe paths} in FAMILIES order."""
    out = {}
    for family in FAMILIES:
        if only and family not in only:
            continue
        paths = sorted(p for p in (REPO / "configs" / family).glob("*.yaml")
                       if not p.name.startswith("_") and "synthetic" not in p.name
                       and not (family == "vln" and p.name.startswith("navworld_")))
        if paths:
            out[family] = paths
    return out


def _num(value: float | None, fmt: str) -> str:
    return "?" if value is None else format(value, fmt)


def _hours(hours: float | None) -> str:
    """Two significant digits below 10 (0.021, 1.3), one decimal below 100, whole hours above."""
    if hours is None:
        return "?"
    return "< 0.001" if hours < 0.001 else f"{hours:.2g}" if hours < 10 else f"{hours:,.1f}" if hours < 100 \
        else f"{hours:,.0f}"


def _paper(card: Card) -> str:
    value = card.paper.get("reproduces")
    return "—" if value is None else f"{value}"


def _train_row(card: Card) -> str:
    act = max(p.cost.activation_bytes for p in card.phases)
    cells = [f"`{Path(card.recipe).name}`", str(card.facts.get("model", card.task)),
             f"{card.params / 1e6:.1f} M", f"{card.flops_per_sample / 1e9:.1f}",
             _num(card.flops_per_update and card.flops_per_update / 1e12, ".2f"), _num(card.updates, ","),
             _hours(card.gpu_hours), f"{act / 2**20:,.0f}",
             f"{card.peak_bytes / 2**30:.1f}", f"{card.input_bytes / 2**20:.2f}", f"{card.seconds_here:,.1f}",
             _paper(card)]
    return "| " + " | ".join(cells) + " |"


def _eval_row(card: Card) -> str:
    cells = [f"`{Path(card.recipe).name}`", str(card.facts.get("model", card.task)), _num(card.eval_samples, ","),
             f"{card.flops_per_sample / 1e9:,.1f}", _num(card.total_flops and card.total_flops / 1e15, ",.2f"),
             _hours(card.gpu_hours), f"{card.seconds_here:,.2f}", _paper(card)]
    return "| " + " | ".join(cells) + " |"


def family_table(family: str, cards: list[Card], gpu: str) -> list[str]:
    lines = [f"## {family}", "", FAMILIES[family], ""]
    train = [c for c in cards if not c.evaluation_only]
    evals = [c for c in cards if c.evaluation_only]
    if train:
        lines += [(f"| recipe | model | trainable | GFLOP / sample | TFLOP / update | updates | {gpu}-h | "
                   "act. MiB / sample | peak GiB, whole batch on 1 GPU | input MiB / sample | s / update here | paper |"),
                  "|---|---|---|---|---|---|---|---|---|---|---|---|", *(_train_row(c) for c in train), ""]
    if evals:
        lines += [(f"| recipe | model | test samples | GFLOP / sample (forward) | PFLOP in all | {gpu}-h | "
                   "s / sample here | paper |"), "|---|---|---|---|---|---|---|---|", *(_eval_row(c) for c in evals),
                  ""]
    return lines


def summary(card: Card) -> dict[str, Any]:
    """The numbers of a card's table row (benchmarks/results/cards.json; the README's table is checked
    against it)."""
    return {"recipe": card.recipe, "task": card.task, "model": str(card.facts.get("model", card.task)),
            "trainable_params": card.params, "flops_per_sample": card.flops_per_sample,
            "flops_per_update": card.flops_per_update, "updates": card.updates, "total_flops": card.total_flops,
            "gpu_hours": card.gpu_hours, "gpu": card.gpu.name, "peak_bytes_one_gpu": card.peak_bytes,
            "seconds_here": card.seconds_here, "hours_here": card.hours_here, "evaluation_only": card.evaluation_only,
            "paper": card.paper.get("reproduces"), "paper_metric": card.paper.get("metric")}


def _machine(threads: int) -> str:
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    return (f"{platform.machine()} CPU ({os.cpu_count()} cores), torch {torch.__version__}, {threads} thread(s), "
            f"load average {load:.1f} at the end")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(REPO / "docs" / "cards.md"))
    parser.add_argument("--json", default=str(REPO / "benchmarks" / "results" / "cards.json"),
                        help="the table rows as JSON (default benchmarks/results/cards.json)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1: robust on a shared "
                        "machine; 0: torch's default)")
    parser.add_argument("--only", default="", help="comma-separated families (default: all)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    os.chdir(REPO)  # the recipes' relative paths (answer vocabularies) are relative to the repository
    cache: dict[Any, StepCost] = {}
    cards: dict[str, list[Card]] = {}
    start = time.perf_counter()
    for family, paths in recipes([f for f in args.only.split(",") if f]).items():
        for path in paths:
            t0 = time.perf_counter()
            cards.setdefault(family, []).append(make_card(path.relative_to(REPO), cache=cache))
            print(f"{family}/{path.name}: {time.perf_counter() - t0:.1f} s", flush=True)
    elapsed = time.perf_counter() - start
    every = [c for cs in cards.values() for c in cs]
    g = every[0].gpu
    lines = [
        "# Recipe cards", "",
        (f"Generated by `scripts/make_cards.py` (`clipvil card` on each recipe) on {_machine(torch.get_num_threads())}"
         f", in {elapsed:.0f} s ({len(cache)} distinct phase measurements for {len(every)} recipes). Per-sample "
         "FLOPs count forward + backward of one synthetic sample at the recipe's shapes (`torch.utils.flop_counter`;"
         " element-wise ops not counted), per phase, and the run's FLOPs are the sum over phases of updates x batch "
         "x FLOPs; activations are the bytes autograd saves for backward (fp32); the peak memory on one GPU is fp32 "
         "weights + gradients + the optimizers' measured states + activations x micro-batch. Seconds per update "
         "are the fastest of a few clean updates (timed apart from the FLOP-counting one) at batch 1, scaled "
         "linearly to the recipe's batch (+ one optimizer step): they describe this CPU, not a GPU. GPU-hours = run "
         f"FLOPs / ({g.name} {g.peak_flops / 1e12:.0f} TFLOP/s dense bf16 x {g.utilisation:.0%}); data loading "
         "and evaluation are not counted. Every card lists its assumptions."), "",
        SKIP_DOC, "",
    ]
    for family, family_cards in cards.items():
        lines += family_table(family, family_cards, g.name)
    lines += [("Paper numbers: `clipvil.apps.card_paper` (each card names its source; — : no number read, the "
               "card says why)."), "", "## Cards", ""]
    for family_cards in cards.values():
        lines += [to_markdown(c) for c in family_cards]
    Path(args.out).write_text("\n".join(lines))
    write_json(args.json, {"benchmark": "cards", "machine": _machine(torch.get_num_threads()),
                           "seconds": round(elapsed, 1), "cards": {str(Path(c.recipe).with_suffix("")).removeprefix(
                               "configs/"): summary(c) for c in every}})
    print(f"wrote {args.out} and {args.json} in {elapsed:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
