"""`clipvil study CONFIG`: the paper's core experiment — one task recipe over many image encoders, several
seeds each — as a resumable grid of cells, reported as a Markdown + JSON table and a PNG plot.

A study YAML (see configs/study/synthetic_vqa.yaml)::

    out: runs/study/synthetic                   # everything goes here (relative to the working directory)
    world: {images: 400, seed: 0}               # the synthetic world the task trains on (made once)
    pretrain_world: {images: 400, seed: 7}      # another world: "CLIP pre-trained" elsewhere, then in-domain
    adapter: vqa                                # the task's adapter (ADAPTERS: how to point it at data + grids)
                                                # (vln: world {kind: nav, seed: 0} — clipvil make-nav-world)
    recipe: ../demo/mcan_synthetic.yaml         # the task recipe (paths relative to the study file)
    overrides: [train.epochs=4]                 # ... and its overrides
    preset: views                               # extraction input preset
    seeds: [0, 1]
    encoders:
      - {name: rn-random, encoder: clipvil-rn-tiny}                       # random weights
      - {name: rn-clip, encoder: clipvil-rn-tiny, weights: my/clip.pt}    # a weight file
      - name: rn-clip-indomain                                            # made by a pre-training recipe,
        encoder: clipvil-rn-tiny                                          # started from another encoder's
        pretrain: {recipe: ../clip/synthetic_rn_tiny.yaml, world: study, init: rn-clip}
      - {name: rn-plugin, plugin: [rn-clip, rn-imagenet]}                 # grids concatenated channel-wise
    sizes: [500, 1000, 4000]                    # optional: a data-efficiency curve, every cell at each size
    min_updates: 100                            # ... trained for at least this many updates (more epochs)

The world's kind follows the adapter: "image" worlds (clipvil make-data; grids of <world>/coco) for VQA and
captioning, "nav" worlds (clipvil make-nav-world over real connectivity graphs; the pooled fp32 embedding of
each of the 36 views of <world>/views) for navigation. Pre-training always runs on image worlds.

Steps, each resumable: worlds (reused when equal), pre-training runs (the engine resumes them; exported once,
marked by the export's files), extraction (skips stored images), then the cells (encoder x seed): a cell
trains under <out>/cells/<encoder>/seed<k>/ (resumes from its last.pt) and is finished when
<out>/cells/<encoder>/seed<k>.json exists (written atomically after its evaluation). A killed study rerun
continues with the first unfinished cell. The report (study_report) is rewritten at the end.

With `sizes`, the cells are encoder x size x seed (<out>/cells/<encoder>/n<size>/seed<k>): each trains on a
subset of the world's training items (the adapter's unit: VQA questions, caption images, navigation paths),
nested (the first n of one permutation drawn with `subset_seed`, so the small set is inside the large one) and
written once under <out>/subsets/n<size>; the evaluation splits are the world's, whole. A small subset gets
more epochs: max(the recipe's, enough for `min_updates` updates at the recipe's batch size). The report then
draws the curves: the metric against the size, one line per encoder, one panel per tower family.
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from clipvil.apps.export_clip import export_clip
from clipvil.apps.extract import ExtractConfig, run_extract
from clipvil.apps.study_report import write_report
from clipvil.apps.study_tasks import ADAPTERS, PRETRAIN_DATA, WORLD_KINDS, Subset, WorldSpec, nav_world_spec
from clipvil.common.atomic import atomic_write_json
from clipvil.encoders.registry import tower_family
from clipvil.engine.config import load_config
from clipvil.engine.config_io import build_dataclass
from clipvil.engine.evaluate import evaluate
from clipvil.engine.loop import train

log = logging.getLogger(__name__)


@dataclass
class PretrainSpec:
    """A pre-training run that makes an encoder's weights (a clip or classify recipe)."""

    recipe: str = ""  # the recipe YAML (relative to the study file)
    overrides: list[str] = field(default_factory=list)  # its overrides
    world: str = "study"  # data: "study" (the task's world: in-domain) or "pretrain" (pretrain_world)
    init: str = ""  # start from this other encoder's weights (task.weights), e.g. further pre-training


@dataclass
class EncoderSpec:
    """One row of the study: an encoder and where its weights come from."""

    name: str = ""  # row label (also the folder name)
    encoder: str = ""  # build_encoder / extract name (clipvil-rn-tiny, RN50, ...); empty for a plugin
    weights: str = ""  # a weight file ("" with no pretrain: random weights)
    pretrain: PretrainSpec | None = None  # or: the recipe that makes the weights
    plugin: list[str] = field(default_factory=list)  # or: other encoders whose grids are concatenated
    family: str = ""  # plot group (default: the tower family, e.g. clip-resnet / clip-vit)
    preset: str = ""  # extraction preset of this encoder ("": the study's)


@dataclass
class StudyConfig:
    """A whole study (see the module docstring)."""

    out: str = "runs/study"  # output folder
    recipe: str = ""  # the task recipe
    adapter: str = "vqa"  # the task adapter (ADAPTERS)
    overrides: list[str] = field(default_factory=list)  # recipe overrides for every cell
    world: WorldSpec = field(default_factory=WorldSpec)  # the task's world
    pretrain_world: WorldSpec = field(default_factory=lambda: WorldSpec(seed=7))  # the other world
    preset: str = "views"  # extraction preset
    seeds: list[int] = field(default_factory=lambda: [0, 1])  # training seeds per encoder
    encoders: list[EncoderSpec] = field(default_factory=list)  # the rows
    extract_batch: int = 32  # images per store part
    sizes: list[int] = field(default_factory=list)  # training items per cell: a data-efficiency curve ([]: all)
    min_updates: int = 0  # with sizes: at least this many updates per cell (small subsets get more epochs)
    subset_seed: int = 0  # the permutation the nested subsets are cut from


def load_study(path: str | Path) -> tuple[StudyConfig, Path]:
    """The study config of a YAML file and the folder its relative recipe paths start from."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"study config not found: {path}")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        raise ValueError(f"{path}: not a valid YAML study config ({err})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: a study config holds a mapping, got {type(data).__name__}")
    cfg = build_dataclass(StudyConfig, data, str(path))
    check_study(cfg, str(path))
    check_recipes(cfg, path.resolve().parent, str(path))
    return cfg, path.resolve().parent


def check_recipes(cfg: StudyConfig, base: Path, source: str) -> None:
    """The task recipe with the adapter's and the study's overrides, and every pre-training recipe, load now
    (placeholder data paths): a mistyped override fails before any world, extraction or training."""
    adapter = ADAPTERS[cfg.adapter]
    placeholder = Path("<world>")
    try:
        load_config(base / cfg.recipe, [*adapter.overrides(placeholder, [placeholder / "features"]),
                                        *cfg.overrides])
        for e in cfg.encoders:
            if e.pretrain is not None:
                task_name = load_config(base / e.pretrain.recipe, e.pretrain.overrides).task_name
                if task_name not in PRETRAIN_DATA:
                    raise ValueError(f"encoder {e.name!r}: pre-training task {task_name!r} unknown to the study "
                                     f"({sorted(PRETRAIN_DATA)})")
    except (ValueError, KeyError, FileNotFoundError) as err:
        raise ValueError(f"{source}: {err}") from None


def check_study(cfg: StudyConfig, source: str) -> None:
    """Names unique, references known, adapter registered: a ValueError naming the entry otherwise."""
    names = [e.name for e in cfg.encoders]
    if not names or len(set(names)) != len(names) or not all(names):
        raise ValueError(f"{source}: encoders need unique, non-empty names, got {names}")
    if cfg.adapter not in ADAPTERS:
        raise ValueError(f"{source}: adapter {cfg.adapter!r} unknown; known: {sorted(ADAPTERS)}")
    for which, spec in (("world", cfg.world), ("pretrain_world", cfg.pretrain_world)):
        if spec.kind not in WORLD_KINDS:
            raise ValueError(f"{source}: {which}.kind {spec.kind!r} unknown; known: {sorted(WORLD_KINDS)}")
    if cfg.world.kind == "nav":  # the nav fields and the graphs' folder checked now, not after pre-training
        try:
            nav_world_spec(cfg.world)
        except ValueError as err:
            raise ValueError(f"{source}: {err}") from None
        if not Path(cfg.world.connectivity).is_dir():
            raise ValueError(f"{source}: world.connectivity: no such folder {cfg.world.connectivity} (relative to "
                             "the working directory: the Matterport3D connectivity graphs)")
    adapter = ADAPTERS[cfg.adapter]
    if any(not isinstance(n, int) or n < 1 for n in cfg.sizes) or len(set(cfg.sizes)) != len(cfg.sizes):
        raise ValueError(f"{source}: sizes must be distinct positive numbers of training {adapter.unit}, "
                         f"got {cfg.sizes}")
    if cfg.min_updates < 0:
        raise ValueError(f"{source}: min_updates must be >= 0, got {cfg.min_updates}")
    if cfg.world.kind != adapter.world_kind:
        raise ValueError(f"{source}: the {cfg.adapter} adapter trains on {adapter.world_kind!r} worlds; set "
                         f"world.kind: {adapter.world_kind}")
    if cfg.pretrain_world.kind != "image":
        raise ValueError(f"{source}: pretrain_world.kind must be 'image' (pre-training reads images and captions)")
    for e in cfg.encoders:
        ways = sum([bool(e.plugin), e.pretrain is not None, bool(e.weights)])
        if ways > 1 or (not e.plugin and not e.encoder):
            raise ValueError(f"{source}: encoder {e.name!r}: give `encoder` with at most one of weights / "
                             "pretrain, or a `plugin` list")
        if e.plugin and not adapter.plugins:
            raise ValueError(f"{source}: encoder {e.name!r}: the {cfg.adapter} task reads one feature store; a "
                             "plugin of several is not supported")
        for ref in e.plugin + ([e.pretrain.init] if e.pretrain and e.pretrain.init else []):
            if ref not in names or ref == e.name:
                raise ValueError(f"{source}: encoder {e.name!r} refers to {ref!r}, not another encoder of the study")
        if e.pretrain is not None and e.pretrain.world not in ("study", "pretrain"):
            raise ValueError(f"{source}: encoder {e.name!r}: pretrain.world must be 'study' or 'pretrain'")
        if e.pretrain is not None and e.pretrain.world == "study" and cfg.world.kind != "image":
            raise ValueError(f"{source}: encoder {e.name!r}: pre-training reads images and captions, which a "
                             f"{cfg.world.kind!r} world has not; use pretrain.world: pretrain")


class Study:
    """Runs a loaded study (see the module docstring); every step resumes."""

    def __init__(self, cfg: StudyConfig, base: Path) -> None:
        self.cfg, self.base, self.out = cfg, base, Path(cfg.out)
        self.specs = {e.name: e for e in cfg.encoders}
        self.adapter = ADAPTERS[cfg.adapter]
        self._weights: dict[str, Path | None] = {}
        self._stores: dict[str, Path] = {}
        self._subsets: dict[int, Subset] = {}

    def world(self, which: str = "study") -> Path:
        spec, root = (self.cfg.world, self.out / "world") if which == "study" else \
            (self.cfg.pretrain_world, self.out / "pretrain_world")
        WORLD_KINDS[spec.kind].make(root, spec)
        return root

    def weights(self, name: str) -> Path | None:
        """The encoder's weight file (pre-training and exporting it first when needed); None = random."""
        if name not in self._weights:
            spec = self.specs[name]
            if spec.weights:
                self._weights[name] = Path(spec.weights)
            elif spec.pretrain is not None:
                self._weights[name] = self._pretrain(spec)
            else:
                self._weights[name] = None
        return self._weights[name]

    def _pretrain(self, spec: EncoderSpec) -> Path:
        pre = spec.pretrain
        assert pre is not None
        run_dir = self.out / "pretrain" / spec.name
        target = run_dir / "export" / f"{spec.encoder}.pt"
        if target.is_file():
            return target
        world = self.world(pre.world)
        recipe = self.base / pre.recipe
        task_name = load_config(recipe).task_name  # a task of PRETRAIN_DATA (check_recipes)
        overrides = [*PRETRAIN_DATA[task_name](world), f"out_dir={run_dir}", "train.progress=false", *pre.overrides]
        if pre.init:
            init = self.weights(pre.init)
            if init is None:
                raise ValueError(f"encoder {spec.name!r}: pretrain.init {pre.init!r} has random weights")
            overrides.append(f"task.weights={init}")
        run_cfg = load_config(recipe, overrides)
        print(f"[study] pre-training {spec.name} ({task_name}, {recipe.name}) -> {run_dir}", flush=True)
        result = train(run_cfg)
        exported = export_clip(result.best_checkpoint or result.last_checkpoint, run_dir / "export")
        if exported.encoder != spec.encoder:
            raise ValueError(f"encoder {spec.name!r}: its recipe trains {exported.encoder!r}, not {spec.encoder!r}")
        return exported.weights

    def store(self, name: str) -> Path:
        """The encoder's feature store of the study world (extracted, or resumed)."""
        if name not in self._stores:
            spec, weights = self.specs[name], self.weights(name)
            store = self.out / "features" / name
            print(f"[study] grids of {name} ({spec.encoder}, {weights or 'RANDOM weights'}) -> {store}", flush=True)
            kind = WORLD_KINDS[self.cfg.world.kind]
            run_extract(ExtractConfig(encoder=spec.encoder, images=self.world() / kind.images, out=store,
                                      preset=spec.preset or self.cfg.preset, weights=weights,
                                      batch_size=self.cfg.extract_batch, pooled=kind.pooled, dtype=kind.dtype,
                                      progress=False))
            self._stores[name] = store
        return self._stores[name]

    def features(self, name: str) -> list[Path]:
        spec = self.specs[name]
        return [self.store(n) for n in spec.plugin] if spec.plugin else [self.store(name)]

    def cell_file(self, name: str, seed: int, size: int | None = None) -> Path:
        folder = self.out / "cells" / name
        return (folder if size is None else folder / f"n{size}") / f"seed{seed}.json"

    def subset(self, size: int) -> Subset:
        """The study world with only `size` training items (written once; the same for every cell)."""
        if size not in self._subsets:
            root = self.out / "subsets" / f"n{size}"
            self._subsets[size] = self.adapter.subset(self.world(), size, self.cfg.subset_seed, root)
        return self._subsets[size]

    def _epochs(self, run_cfg: Any, examples: int) -> list[str]:
        """The override giving a subset at least `min_updates` updates (none when the recipe's epochs do)."""
        if not self.cfg.min_updates:
            return []
        per_epoch = max(examples // run_cfg.train.batch_size, 1)  # the global batch; a short last batch dropped
        epochs = max(run_cfg.train.epochs, math.ceil(self.cfg.min_updates / per_epoch))
        return [f"train.epochs={epochs}"] if epochs != run_cfg.train.epochs else []

    def run_cell(self, name: str, seed: int, size: int | None = None) -> dict[str, Any]:
        """Trains and evaluates one (encoder, seed[, size]) cell, or reads its finished record."""
        done = self.cell_file(name, seed, size)
        if done.is_file():
            return json.loads(done.read_text())
        features, t0 = self.features(name), time.perf_counter()
        run_dir = done.with_suffix("")
        subset = self.subset(size) if size is not None else None
        world = subset.root if subset is not None else self.world()
        overrides = [*self.adapter.overrides(world, features), f"out_dir={run_dir}", f"train.seed={seed}",
                     "train.progress=false", *self.cfg.overrides]
        if subset is not None:
            overrides += self._epochs(load_config(self.base / self.cfg.recipe, overrides), subset.examples)
        run_cfg = load_config(self.base / self.cfg.recipe, overrides)
        at = "" if size is None else f" on {size} {self.adapter.unit}, {run_cfg.train.epochs} epochs"
        print(f"[study] cell {name} seed {seed}{at} -> {run_dir}", flush=True)
        result = train(run_cfg)
        checkpoint = result.best_checkpoint or result.last_checkpoint
        if self.adapter.splits:
            split = "+".join(self.adapter.splits)
            per_split = evaluate(run_cfg, checkpoint, list(self.adapter.splits))  # one task build for all splits
            if len(self.adapter.splits) == 1:
                per_split = {self.adapter.splits[0]: per_split}
            metrics = {f"{s}/{k}": v for s, split_metrics in per_split.items() for k, v in split_metrics.items()}
        else:
            split = run_cfg.train.best_split or run_cfg.train.eval_splits[0]
            metrics = evaluate(run_cfg, checkpoint, split)
        record = {"encoder": name, "seed": seed, **({} if size is None else {"size": size}),
                  "family": self.family(name), "split": split,
                  "metrics": self.adapter.report(metrics), "train_seconds": round(time.perf_counter() - t0, 2),
                  "weights": [str(self.weights(n)) if self.weights(n) else "random" for n in
                              (self.specs[name].plugin or [name])]}
        atomic_write_json(done, record, indent=2)
        return record

    def family(self, name: str) -> str:
        spec = self.specs[name]
        if spec.family:
            return spec.family
        parts = spec.plugin or [name]
        return "+".join(sorted({tower_family(self.specs[p].encoder) for p in parts}))

    def run(self, only: list[str] | None = None) -> dict[str, Any]:
        """Every cell in config order (sizes, then encoders, then seeds; with `only`, those encoders' cells),
        then the report over every finished cell; returns the report's data."""
        names = [e.name for e in self.cfg.encoders]
        unknown = sorted(set(only or []) - set(names))
        if unknown:
            raise ValueError(f"--only: no encoder named {', '.join(map(repr, unknown))} in the study; "
                             f"its encoders: {', '.join(names)}")
        sizes: list[int | None] = list(self.cfg.sizes) or [None]
        for size in self.cfg.sizes:  # every subset first: a size the world cannot give fails before any work
            self.subset(size)
        cells = [(name, seed, size) for size in sizes for name in names for seed in self.cfg.seeds]
        for name, seed, size in cells:
            if only is None or name in only:
                self.run_cell(name, seed, size)
        records = [json.loads(f.read_text()) for f in (self.cell_file(*c) for c in cells) if f.is_file()]
        return write_report(records, self.out, names, self.cfg.adapter, self.adapter.metric,
                            unit=self.adapter.unit)


def run_study(path: str | Path, only: list[str] | None = None) -> dict[str, Any]:
    """`clipvil study CONFIG`: loads and runs the study (with `only`: those encoders' cells); returns the report
    data (also in <out>/study.json)."""
    cfg, base = load_study(path)
    return Study(cfg, base).run(only)


__all__ = ["EncoderSpec", "PretrainSpec", "Study", "StudyConfig", "load_study", "run_study"]
