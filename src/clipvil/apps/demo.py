"""The embedded demo, end to end on one machine, and the paper's question in miniature: does a CLIP tower give
a VQA head better grids than an ImageNet-style tower and than no pre-training?

    synthetic world (1000 images; the downstream world: never seen by any tower)
      -> grids of three towers of the same architecture (clipvil-vit-tiny, frozen, 128x128 -> 8x8x128):
           CLIP            the package's shipped clip-vit-tiny (contrastive, 100k corpus pairs)
           ImageNet-style  the shipped imagenet-vit-tiny (the same images, single-label object classes)
           random          the same tower with random weights
      -> a small MCAN on each, three seeds each (two trainings at a time, one thread each)
      -> VQA accuracy per question type (mean over seeds, overall ± std), next to the majority answer
      -> linear probes of shape / colour / count / position from each tower's grids (`clipvil probe`)

Nothing is pre-trained inside the demo: the towers ship with the package (`clipvil.encoders.shipped`;
`bash scripts/train_towers.sh` reproduces them). Every step is resumable and cached: the world is reused,
extraction skips finished images, each training resumes or is skipped when done. `--weights FILE` replaces
the CLIP row's weights with a real CLIP file of `--encoder` (then `--imagenet-weights`, or no ImageNet row).
The CLIP tower's seed-0 run is `<out>/run` (what `clipvil serve` picks up).
"""

from __future__ import annotations

import json
import multiprocessing
import os
import statistics
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from clipvil import recipes
from clipvil.apps.extract import ExtractConfig, run_extract
from clipvil.apps.probe import format_probe_table, probe_stores
from clipvil.common.atomic import atomic_write_text
from clipvil.data.synthetic import make_data
from clipvil.data.vqa import read_vqa
from clipvil.metrics.vqa import VqaReference, vqa_accuracy

REPO_CONFIG = recipes.find("demo/mcan_synthetic.yaml")  # found through the package: works from a wheel
TOWERS = ("clip", "imagenet", "random")
# The recipe's 11 epochs cut to 4 (lr x0.2 after 3), so that 3 towers x 3 seeds train within the demo's
# 10-minute budget on 2 cores; `clipvil demo train.epochs=11 schedule.milestones=[8,10]` runs the recipe as is.
DEMO_OVERRIDES: tuple[str, ...] = ("train.epochs=4", "schedule.milestones=[3]")
LABELS = {"clip": "CLIP", "imagenet": "ImageNet-style", "random": "random"}
# architecture -> the shipped (CLIP, ImageNet-style) towers of it
SHIPPED = {"clipvil-vit-tiny": ("clip-vit-tiny", "imagenet-vit-tiny"),
           "clipvil-rn-tiny": ("clip-rn-tiny", "imagenet-rn-tiny")}


@dataclass
class DemoConfig:
    """What `clipvil demo` does."""

    out: Path = Path("runs/demo")  # everything goes under this folder
    images: int = 1000  # synthetic images (80% train, 10% val, 10% test)
    encoder: str = "clipvil-vit-tiny"  # the architecture of all three towers
    weights: str | Path | None = None  # the CLIP row's weights (default: the shipped CLIP of `encoder`)
    imagenet_weights: str | Path | None = None  # the ImageNet-style row's (default: the shipped one, if any)
    preset: str = "native"  # the tower's own input size (clipvil-vit-tiny: 128x128 -> 8x8 grid of 128)
    config: Path = REPO_CONFIG  # the VQA training recipe (YAML)
    overrides: tuple[str, ...] = DEMO_OVERRIDES  # key=value overrides of the VQA recipe
    seeds: tuple[int, ...] = (0, 1, 2)  # training seeds of every tower
    jobs: int = 2  # trainings at a time (each on one thread)
    seed: int = 0  # world seed
    probe: bool = True  # also run the linear probes
    towers: tuple[str, ...] = field(default=TOWERS)  # which rows


def majority_baseline(train_file: Path, train_ann: Path, val_file: Path, val_ann: Path) -> dict[str, Any]:
    """Accuracy of always answering the most frequent train answer (overall and per question type)."""
    train_split = read_vqa(train_file, train_ann)
    top = Counter(ex.multiple_choice_answer for ex in train_split.examples).most_common(1)[0][0]
    val = read_vqa(val_file, val_ann)
    refs = {e.question_id: VqaReference(e.answers, e.question_type, e.answer_type) for e in val.examples}
    scores = vqa_accuracy({q: top for q in refs}, refs)
    return {"answer": top, "accuracy": scores.overall, "per_question_type": scores.per_question_type}


def tower_weights(cfg: DemoConfig) -> dict[str, str | Path | None]:
    """{row: weights} of the rows the demo compares (a row without weights is left out, random aside)."""
    shipped = SHIPPED.get(cfg.encoder, (None, None))
    weights: dict[str, str | Path | None] = {"clip": cfg.weights or shipped[0],
                                             "imagenet": cfg.imagenet_weights or shipped[1], "random": None}
    if weights["clip"] is None:
        raise ValueError(f"--encoder {cfg.encoder}: no shipped CLIP of this architecture "
                         f"(shipped: {', '.join(SHIPPED)}); give --weights FILE")
    if cfg.weights is not None and cfg.imagenet_weights is None:
        weights.pop("imagenet")  # a foreign CLIP: no ImageNet-style tower of its architecture unless given
    return {k: v for k, v in weights.items() if k in cfg.towers and (k == "random" or v is not None)}


def run_name(tower: str, seed: int) -> str:
    """The run folder of one training: the CLIP tower's first seed is `run` (what serve picks up)."""
    return "run" if (tower, seed) == ("clip", 0) else f"run-{tower}-s{seed}"


def _train_job(job: tuple[Path, tuple[str, ...], int]) -> dict[str, Any]:
    """One VQA training + evaluation on the val split, in a worker process with one thread."""
    import torch

    from clipvil.engine.config import load_config
    from clipvil.engine.evaluate import evaluate
    from clipvil.engine.loop import train

    config, overrides, threads = job
    torch.set_num_threads(threads)
    run_cfg = load_config(config, list(overrides))
    result = train(run_cfg)
    return evaluate(run_cfg, result.best_checkpoint or result.last_checkpoint, "val")


def _per_type(metrics: dict[str, Any]) -> dict[str, float]:
    return {k[len("qtype/"):]: float(v) for k, v in metrics.items() if k.startswith("qtype/")}


def train_all(cfg: DemoConfig, world: Path, stores: dict[str, Path]) -> dict[str, dict[int, dict[str, Any]]]:
    """{tower: {seed: val metrics}}: every (tower, seed) training, `cfg.jobs` at a time."""
    keys = [(t, s) for t in stores for s in cfg.seeds]
    jobs = [(cfg.config, (f"task.data_dir={world / 'vqa'}", f"task.features={stores[t]}",
                          f"out_dir={cfg.out / run_name(t, s)}", f"train.seed={s}", "train.progress=false",
                          *cfg.overrides), 1 if cfg.jobs > 1 else (os.cpu_count() or 1)) for t, s in keys]
    if cfg.jobs > 1:
        with multiprocessing.get_context("spawn").Pool(cfg.jobs) as pool:
            metrics = pool.map(_train_job, jobs, chunksize=1)
    else:
        metrics = [_train_job(job) for job in jobs]
    out: dict[str, dict[int, dict[str, Any]]] = {}
    for (tower, seed), m in zip(keys, metrics):
        out.setdefault(tower, {})[seed] = m
    return out


def summarise(results: dict[str, dict[int, dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    """Per tower: accuracy per seed, mean, std (population over seeds) and per-question-type means."""
    out = {}
    for tower, by_seed in results.items():
        accs = [float(m["accuracy"]) for m in by_seed.values()]
        types = sorted({q for m in by_seed.values() for q in _per_type(m)})
        out[tower] = {"seeds": {str(s): float(m["accuracy"]) for s, m in by_seed.items()},
                      "mean": statistics.fmean(accs), "std": statistics.pstdev(accs),
                      "per_question_type": {q: statistics.fmean(_per_type(m).get(q, 0.0) for m in by_seed.values())
                                            for q in types}}
    return out


def _print_table(towers: dict[str, dict[str, Any]], baseline: dict[str, Any]) -> None:
    kinds = list(towers)
    print(f"{'question type':<26}" + "".join(f"{LABELS[k]:>18}" for k in kinds) + f"{'majority':>12}")
    overall = "".join(f"{towers[k]['mean']:>11.2f} ± {towers[k]['std']:<4.2f}" for k in kinds)
    print(f"{'overall':<26}{overall}{baseline['accuracy']:>12.2f}")
    for q in towers[kinds[0]]["per_question_type"]:
        row = "".join(f"{towers[k]['per_question_type'].get(q, 0.0):>18.2f}" for k in kinds)
        print(f"{q:<26}{row}{baseline['per_question_type'].get(q, 0.0):>12.2f}")


def _gaps(towers: dict[str, dict[str, Any]]) -> dict[str, dict[str, float | bool]]:
    """CLIP minus each other row, and whether the gap exceeds twice the larger spread of the two."""
    out: dict[str, dict[str, float | bool]] = {}
    for other in (t for t in towers if t != "clip"):
        gap = towers["clip"]["mean"] - towers[other]["mean"]
        spread = 2 * max(towers["clip"]["std"], towers[other]["std"])
        out[other] = {"gap": gap, "twice_std": spread, "separated": gap > spread}
    return out


def run_demo(cfg: DemoConfig) -> dict[str, Any]:
    """Runs the steps and returns (and prints, and writes to <out>/demo_result.json) the result."""
    t0 = time.perf_counter()
    world = cfg.out / "world"
    weights = tower_weights(cfg)
    print(f"[1/4] synthetic world: {cfg.images} images -> {world}", flush=True)
    make_data(world, cfg.images, seed=cfg.seed)
    stores, extracted = {}, 0
    for kind, w in weights.items():
        stores[kind] = cfg.out / "features" / f"{cfg.encoder}-{kind}-{cfg.preset}"
        print(f"[2/4] {LABELS[kind]} tower: {cfg.encoder} grids ({w or 'RANDOM weights'}) -> {stores[kind]}",
              flush=True)
        extracted += run_extract(ExtractConfig(encoder=cfg.encoder, images=world / "coco", out=stores[kind],
                                               preset=cfg.preset, weights=w, batch_size=32)).extracted
    print(f"[3/4] MCAN on each tower's grids, seeds {list(cfg.seeds)} ({cfg.jobs} at a time) -> {cfg.out}/run*",
          flush=True)
    towers = summarise(train_all(cfg, world, stores))
    vqa = world / "vqa"
    baseline = majority_baseline(vqa / "v2_OpenEnded_mscoco_train2014_questions.json",
                                 vqa / "v2_mscoco_train2014_annotations.json",
                                 vqa / "v2_OpenEnded_mscoco_val2014_questions.json",
                                 vqa / "v2_mscoco_val2014_annotations.json")
    print(f"\nVQA accuracy on the synthetic val split (MCAN on {cfg.encoder} grids; mean of seeds "
          f"{list(cfg.seeds)}, overall ± std over seeds)")
    _print_table(towers, baseline)
    probes: dict[str, dict[str, float]] = {}
    if cfg.probe:
        print("[4/4] linear probes of each tower's grids (test split; shape, colour, position: mAP; count: accuracy)",
              flush=True)
        probes = probe_stores(world, stores)
        print(format_probe_table({LABELS[k]: v for k, v in probes.items()}))
    summary = {"encoder": cfg.encoder, "towers": towers, "weights": {k: str(v) if v else "RANDOM weights (seed 0)"
                                                                     for k, v in weights.items()},
               "gaps": _gaps(towers) if "clip" in towers else {}, "probes": probes,
               "majority_baseline": baseline["accuracy"], "majority_answer": baseline["answer"],
               "majority_per_question_type": baseline["per_question_type"], "seeds": list(cfg.seeds),
               "images_extracted": extracted, "minutes": round((time.perf_counter() - t0) / 60, 2),
               "run_dir": str(cfg.out / "run")}
    atomic_write_text(cfg.out / "demo_result.json", json.dumps(summary, indent=2) + "\n")
    print(f"\nresult written to {cfg.out / 'demo_result.json'} ({summary['minutes']} min)")
    serve = "clipvil serve" + ("" if cfg.out == Path("runs/demo") else f" --demo-dir {cfg.out}")
    print(f"see the CLIP tower's model in a browser: {serve}   -> http://127.0.0.1:8000/ (API docs at /docs)")
    return summary


__all__ = ["DemoConfig", "majority_baseline", "run_demo", "run_name", "summarise", "tower_weights"]
