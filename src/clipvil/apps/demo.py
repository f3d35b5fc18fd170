"""The embedded demo, end to end on one machine, and the paper's point in miniature: a CLIP-pretrained tower
gives a VQA head better grids than the same tower with random weights.

    synthetic world -> contrastive pre-training of a small CLIP on the world's captions (clip task)
                    -> grids of the CLIP-pretrained tower and of the same tower with random weights
                    -> MCAN on each -> VQA accuracy per question type, next to the majority answer

Every step is resumable and cached: the world is reused when it exists with the same parameters, the
pre-trained CLIP is reused once exported (a rerun skips pre-training), extraction skips finished images,
training resumes from its last checkpoint. `--weights FILE` skips pre-training and uses that CLIP instead.
The CLIP-pretrained tower's VQA run is `<out>/run` (what `clipvil serve` picks up; give it the weights with
`--weights <out>/clip/export/<encoder>.pt`), the random tower's `<out>/run-random`.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from clipvil import recipes
from clipvil.apps.export_clip import export_clip
from clipvil.apps.extract import ExtractConfig, run_extract
from clipvil.common.atomic import atomic_write_text
from clipvil.data.synthetic import make_data
from clipvil.data.vqa import read_vqa
from clipvil.metrics.vqa import VqaReference, vqa_accuracy
from clipvil.train.config import load_config
from clipvil.train.evaluate import evaluate
from clipvil.train.loop import train

REPO_CONFIG = recipes.find("demo/mcan_synthetic.yaml")  # found through the package: works from a wheel
CLIP_CONFIG = recipes.find("clip/_synthetic.yaml")  # task.model is set to the demo's encoder


@dataclass
class DemoConfig:
    """What `clipvil demo` does."""

    out: Path = Path("runs/demo")  # everything goes under this folder
    images: int = 1000  # synthetic images (80% train, 10% val, 10% test)
    encoder: str = "clipvil-vit-tiny"  # the tower (pre-trained here as a CLIP, and as the random baseline)
    weights: Path | None = None  # a local CLIP weight file: skips pre-training and is used instead
    preset: str = "native"  # the tower's own input size (clipvil-vit-tiny: 128x128 -> 8x8 grid of 128)
    config: Path = REPO_CONFIG  # the VQA training recipe (YAML)
    overrides: tuple[str, ...] = ()  # key=value overrides of the VQA recipe
    clip_config: Path = CLIP_CONFIG  # the contrastive pre-training recipe
    clip_overrides: tuple[str, ...] = ("train.epochs=2",)  # its overrides
    random_baseline: bool = True  # also train on the random tower's grids
    seed: int = 0  # world seed


def majority_baseline(train_file: Path, train_ann: Path, val_file: Path, val_ann: Path) -> dict[str, Any]:
    """Accuracy of always answering the most frequent train answer (overall and per question type)."""
    train_split = read_vqa(train_file, train_ann)
    top = Counter(ex.multiple_choice_answer for ex in train_split.examples).most_common(1)[0][0]
    val = read_vqa(val_file, val_ann)
    refs = {e.question_id: VqaReference(e.answers, e.question_type, e.answer_type) for e in val.examples}
    scores = vqa_accuracy({q: top for q in refs}, refs)
    return {"answer": top, "accuracy": scores.overall, "per_question_type": scores.per_question_type}


def _per_type(metrics: dict[str, Any]) -> dict[str, float]:
    return {k[len("qtype/"):]: float(v) for k, v in metrics.items() if k.startswith("qtype/")}


def pretrain_clip(cfg: DemoConfig, world: Path) -> tuple[Path, dict[str, Any]]:
    """The CLIP-pretrained weights: `cfg.weights`, the cached export, or a fresh contrastive run + export."""
    if cfg.weights is not None:
        return cfg.weights, {"weights": str(cfg.weights), "pretrained_here": False}
    run_dir = cfg.out / "clip"
    target, note = run_dir / "export" / f"{cfg.encoder}.pt", run_dir / "export" / "pretrain.json"
    if target.is_file() and note.is_file():
        print(f"      cached: {target}", flush=True)
        return target, json.loads(note.read_text())
    overrides = [f"task.model={cfg.encoder}", f"task.data.root={world / 'captions'}",
                 f"task.data.image_root={world / 'coco'}", f"out_dir={run_dir}", *cfg.clip_overrides]
    result = train(load_config(cfg.clip_config, overrides))
    exported = export_clip(result.best_checkpoint or result.last_checkpoint, run_dir / "export")
    info = {"weights": str(exported.weights), "pretrained_here": True, "steps": result.step,
            "last_loss": result.last_loss, "val_retrieval": result.last_eval.get("val", {})}
    atomic_write_text(note, json.dumps(info, indent=2) + "\n")  # written last: marks the cache complete
    return exported.weights, info


def _train_vqa(cfg: DemoConfig, world: Path, store: Path, run_dir: Path) -> tuple[dict[str, Any], str]:
    overrides = [f"task.data_dir={world / 'vqa'}", f"task.features={store}", f"out_dir={run_dir}", *cfg.overrides]
    run_cfg = load_config(cfg.config, overrides)
    result = train(run_cfg)
    metrics = evaluate(run_cfg, result.best_checkpoint or result.last_checkpoint, "val")
    head = f"{run_cfg.task.model.upper()} ({run_cfg.task.preset} preset, {run_cfg.task.model_overrides or 'as is'})"
    return metrics, head


def _print_table(rows: list[tuple[str, list[float]]], columns: list[str]) -> None:
    print(f"{'question type':<28}" + "".join(f"{c:>14}" for c in columns))
    for name, values in rows:
        print(f"{name:<28}" + "".join(f"{v:>14.2f}" for v in values))


def run_demo(cfg: DemoConfig) -> dict[str, Any]:
    """Runs the steps and returns (and prints, and writes to <out>/demo_result.json) the result table."""
    t0 = time.perf_counter()
    world = cfg.out / "world"
    print(f"[1/5] synthetic world: {cfg.images} images -> {world}", flush=True)
    make_data(world, cfg.images, seed=cfg.seed)
    print(f"[2/5] contrastive pre-training of {cfg.encoder} on the world's captions -> {cfg.out / 'clip'}", flush=True)
    clip_weights, clip_info = pretrain_clip(cfg, world)
    towers = {"clip": clip_weights, **({"random": None} if cfg.random_baseline else {})}
    stores, extracted = {}, 0
    for kind, weights in towers.items():
        stores[kind] = cfg.out / "features" / f"{cfg.encoder}-{kind}-{cfg.preset}"
        print(f"[3/5] extracting {cfg.encoder} grids ({weights or 'RANDOM weights'}) -> {stores[kind]}", flush=True)
        extracted += run_extract(ExtractConfig(encoder=cfg.encoder, images=world / "coco", out=stores[kind],
                                               preset=cfg.preset, weights=weights, batch_size=32)).extracted
    results: dict[str, dict[str, Any]] = {}
    for kind in towers:
        run_dir = cfg.out / ("run" if kind == "clip" else f"run-{kind}")
        print(f"[4/5] training on the {kind} tower's grids -> {run_dir}", flush=True)
        results[kind], head = _train_vqa(cfg, world, stores[kind], run_dir)
    print("[5/5] evaluated the best checkpoints on val", flush=True)
    vqa = world / "vqa"
    baseline = majority_baseline(vqa / "v2_OpenEnded_mscoco_train2014_questions.json",
                                 vqa / "v2_mscoco_train2014_annotations.json",
                                 vqa / "v2_OpenEnded_mscoco_val2014_questions.json",
                                 vqa / "v2_mscoco_val2014_annotations.json")
    kinds = list(towers)
    per_type = {k: _per_type(results[k]) for k in kinds}
    rows = [("overall", [float(results[k]["accuracy"]) for k in kinds] + [float(baseline["accuracy"])])]
    rows += [(q, [per_type[k].get(q, 0.0) for k in kinds] + [float(baseline["per_question_type"].get(q, 0.0))])
             for q in sorted(per_type["clip"])]
    print(f"\nVQA accuracy on the synthetic val split ({results['clip']['n_questions']} questions; {head} on "
          f"{cfg.encoder} grids)")
    _print_table(rows, [{"clip": "CLIP-pretrain", "random": "random tower"}[k] for k in kinds] + ["majority"])
    summary = {"accuracy": results["clip"]["accuracy"],
               "random_tower_accuracy": results["random"]["accuracy"] if "random" in results else None,
               "majority_baseline": baseline["accuracy"], "majority_answer": baseline["answer"],
               "columns": [*kinds, "majority"], "per_question_type": {name: values for name, values in rows[1:]},
               "images_extracted": extracted, "minutes": round((time.perf_counter() - t0) / 60, 2),
               "encoder": cfg.encoder, "weights": str(clip_weights), "random_weights": "RANDOM weights (seed 0)",
               "clip_pretraining": clip_info, "run_dir": str(cfg.out / "run"),
               "random_run_dir": str(cfg.out / "run-random") if "random" in results else None}
    atomic_write_text(cfg.out / "demo_result.json", json.dumps(summary, indent=2) + "\n")
    print(f"\nresult written to {cfg.out / 'demo_result.json'} ({summary['minutes']} min)")
    serve = "clipvil serve" + ("" if cfg.out == Path("runs/demo") else f" --demo-dir {cfg.out}")
    print(f"see the models in a browser: {serve} --weights {clip_weights}   -> http://127.0.0.1:8000/ "
          "(API docs at /docs)")
    return summary
