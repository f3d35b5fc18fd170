"""Zero-shot use of the shipped CLIP towers on the demo world (the paper's Table 7: CLIP answers questions
poorly without a trained head, while its retrieval works): zero-shot image-text retrieval on the world's
Karpathy test split and zero-shot VQA (the world's train answers as candidates, three prompt templates) on
val, for each shipped CLIP next to the same tower with random weights, beside the majority answer.

    .venv/bin/python benchmarks/zero_shot.py --out benchmarks/results/zero_shot.json
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.common import write_json
from clipvil import recipes
from clipvil.apps.demo import majority_baseline
from clipvil.apps.zero_shot import evaluate_weights
from clipvil.data.synthetic import make_data
from clipvil.encoders.shipped import shipped_names
from clipvil.engine.config import load_config

TOWERS = {"clipvil-vit-tiny": "clip-vit-tiny", "clipvil-rn-tiny": "clip-rn-tiny"}  # architecture -> shipped CLIP


def run_tower(world: Path, arch: str, weights: str | None, out: Path) -> dict[str, Any]:
    """Retrieval (test) and zero-shot VQA (val) metrics of one tower."""
    w = f"task.weights={weights}" if weights else "task.weights=null"
    common = [f"task.model={arch}", w, "train.progress=false", f"out_dir={out}"]
    retrieval = evaluate_weights(load_config(recipes.find("retrieval/synthetic.yaml"), [
        *common, f"task.data.root={world / 'captions'}", f"task.data.image_root={world / 'coco'}"]), "test")
    vqa = evaluate_weights(load_config(recipes.find("retrieval/zeroshot_vqa_synthetic.yaml"), [
        *common, f"task.data_dir={world / 'vqa'}", f"task.image_root={world / 'coco'}"]), "val")
    return {"retrieval": {k: round(float(v), 2) for k, v in retrieval.items() if isinstance(v, (int, float))},
            "zeroshot_vqa": {k: round(float(v), 2) for k, v in vqa.items() if isinstance(v, (int, float))}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--world", default=None, help="the demo world (default: made anew, 1000 images, seed 0)")
    ap.add_argument("--out", default="benchmarks/results/zero_shot.json")
    args = ap.parse_args()
    logging.getLogger("clipvil").setLevel(logging.ERROR)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        world = Path(args.world) if args.world else Path(tmp) / "world"
        if not args.world:
            make_data(world, 1000, seed=0, progress=False)
        rows = []
        for arch, name in TOWERS.items():
            if name not in shipped_names():
                continue
            for label, weights in (("CLIP (" + name + ")", name), ("random", None)):
                print(f"[zero-shot] {arch} {label}", flush=True)
                rows.append({"encoder": arch, "tower": label, "weights": weights or "random",
                             **run_tower(world, arch, weights, Path(tmp) / "runs" / f"{arch}-{weights}")})
        vqa = world / "vqa"
        majority = majority_baseline(vqa / "v2_OpenEnded_mscoco_train2014_questions.json",
                                     vqa / "v2_mscoco_train2014_annotations.json",
                                     vqa / "v2_OpenEnded_mscoco_val2014_questions.json",
                                     vqa / "v2_mscoco_val2014_annotations.json")
    write_json(args.out, {"benchmark": "zero_shot", "world": {"images": 1000, "seed": 0}, "rows": rows,
                          "majority_vqa_accuracy": round(majority["accuracy"], 2),
                          "wall_seconds": round(time.perf_counter() - start, 1)})


if __name__ == "__main__":
    main()
