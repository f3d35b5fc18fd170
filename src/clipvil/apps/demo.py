"""The embedded demo, end to end on one machine: synthetic world → CLIP grids → MCAN → VQA accuracy.

Every step is resumable: the world is reused when it exists with the same parameters, extraction skips
finished images, training resumes from its last checkpoint.
"""

from __future__ import annotations

import json
import time
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from clipvil.data.synthetic import make_data
from clipvil.data.vqa import read_vqa
from clipvil.apps.extract import ExtractConfig, run_extract
from clipvil.metrics.vqa import VqaReference, vqa_accuracy
from clipvil.train.config import load_config
from clipvil.train.evaluate import evaluate
from clipvil.train.loop import train

REPO_CONFIG = Path(__file__).resolve().parents[3] / "configs" / "demo" / "mcan_synthetic.yaml"


@dataclass
class DemoConfig:
    """What `clipvil demo` does."""

    out: Path = Path("runs/demo")  # everything goes under this folder
    images: int = 1000  # synthetic images (80% train, 10% val, 10% test)
    encoder: str = "ViT-B-32"  # CLIP tower for the grids
    weights: Path | None = None  # local CLIP weight file; None = random weights (stated loudly)
    preset: str = "views"  # 224x224 input → 7x7 grid at stride 32
    config: Path = REPO_CONFIG  # the training recipe (YAML)
    overrides: tuple[str, ...] = ()  # key=value overrides of the recipe
    seed: int = 0  # world seed


def majority_baseline(train_file: Path, train_ann: Path, val_file: Path, val_ann: Path) -> dict[str, Any]:
    """Accuracy of always answering the most frequent train answer (overall and per question type)."""
    train_split = read_vqa(train_file, train_ann)
    top = Counter(ex.multiple_choice_answer for ex in train_split.examples).most_common(1)[0][0]
    val = read_vqa(val_file, val_ann)
    refs = {e.question_id: VqaReference(e.answers, e.question_type, e.answer_type) for e in val.examples}
    scores = vqa_accuracy({q: top for q in refs}, refs)
    return {"answer": top, "accuracy": scores.overall, "per_question_type": scores.per_question_type}


def _family_table(metrics: dict[str, Any], baseline: dict[str, Any]) -> list[tuple[str, float, float]]:
    rows = [("overall", float(metrics["accuracy"]), float(baseline["accuracy"]))]
    per_type: dict[str, float] = defaultdict(float)
    for key, value in metrics.items():
        if key.startswith("qtype/"):
            per_type[key[len("qtype/"):]] = float(value)
    for qtype in sorted(per_type):
        rows.append((qtype, per_type[qtype], float(baseline["per_question_type"].get(qtype, 0.0))))
    return rows


def run_demo(cfg: DemoConfig) -> dict[str, Any]:
    """Runs the four steps and returns (and prints) the result table."""
    t0 = time.perf_counter()
    world = cfg.out / "world"
    print(f"[1/4] synthetic world: {cfg.images} images → {world}", flush=True)
    make_data(world, cfg.images, seed=cfg.seed)
    store = cfg.out / "features" / f"{cfg.encoder}-{cfg.preset}"
    weights_note = str(cfg.weights) if cfg.weights else "RANDOM weights (no --weights file given)"
    print(f"[2/4] extracting {cfg.encoder} grids ({weights_note}) → {store}", flush=True)
    ext = run_extract(ExtractConfig(encoder=cfg.encoder, images=world / "coco", out=store, preset=cfg.preset,
                                    weights=cfg.weights, batch_size=32))
    run_dir = cfg.out / "run"
    overrides = [f"task.data_dir={world / 'vqa'}", f"task.features={store}", f"out_dir={run_dir}",
                 *cfg.overrides]
    run_cfg = load_config(cfg.config, overrides)
    print(f"[3/4] training {run_cfg.task.model.upper()} ({run_cfg.task.preset} preset with "
          f"{run_cfg.task.model_overrides or 'no changes'}) → {run_dir}", flush=True)
    result = train(run_cfg)
    print("[4/4] evaluating the best checkpoint on val", flush=True)
    metrics = evaluate(run_cfg, result.best_checkpoint or result.last_checkpoint, "val")
    vqa = world / "vqa"
    baseline = majority_baseline(vqa / "v2_OpenEnded_mscoco_train2014_questions.json",
                                 vqa / "v2_mscoco_train2014_annotations.json",
                                 vqa / "v2_OpenEnded_mscoco_val2014_questions.json",
                                 vqa / "v2_mscoco_val2014_annotations.json")
    rows = _family_table(metrics, baseline)
    print(f"\nVQA accuracy on the synthetic val split ({metrics['n_questions']} questions; "
          f"encoder {cfg.encoder} with {weights_note})")
    print(f"{'question type':<28}{'MCAN':>8}{'majority':>10}")
    for name, ours, base in rows:
        print(f"{name:<28}{ours:>8.2f}{base:>10.2f}")
    summary = {"accuracy": metrics["accuracy"], "majority_baseline": baseline["accuracy"],
               "majority_answer": baseline["answer"], "per_question_type": {r[0]: [r[1], r[2]] for r in rows[1:]},
               "images_extracted": ext.extracted, "minutes": round((time.perf_counter() - t0) / 60, 2),
               "encoder": cfg.encoder, "weights": weights_note, "run_dir": str(run_dir)}
    (cfg.out / "demo_result.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(f"\nresult written to {cfg.out / 'demo_result.json'} ({summary['minutes']} min)")
    return summary
