"""What the study knows about worlds and tasks: the kinds of synthetic world (how each is made, what its
encoders read) and one adapter per task (how a recipe is pointed at a world and grids, which splits are
evaluated and what is reported). A task joins `clipvil study` with an adapter in ADAPTERS."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from clipvil.common.atomic import atomic_write_json
from clipvil.data.synthetic import make_data
from clipvil.data.synthetic.nav_world import NavWorldSpec, make_nav_world


@dataclass
class WorldSpec:
    """A synthetic world: an image world (clipvil make-data) or a navigation world (clipvil make-nav-world)."""

    kind: str = "image"  # "image" or "nav" (WORLD_KINDS); the adapter says which its task needs
    images: int = 400  # image: images (80% train, 10% val, 10% test)
    seed: int = 0  # world seed
    difficulty: float = 0.5  # image: 0 (easy) .. 1 (hard)
    connectivity: str = "../shared/data/clip-vil/connectivity"  # nav: the Matterport3D connectivity graphs
    # (relative to the working directory, like `out`)
    nav: dict[str, Any] = field(default_factory=dict)  # nav: other NavWorldSpec fields (train_paths,
    # train_scans, unseen_scans, val_seen_paths, val_unseen_paths, width, height, ...; defaults: the embedded world)


@dataclass(frozen=True)
class WorldKind:
    """How a kind of world is made and what the encoders see of it."""

    make: Callable[[Path, WorldSpec], None]  # writes (or reuses) the world at the folder
    images: str  # the world's image folder the encoders read
    pooled: bool = False  # extraction also stores the pooled embedding (what the task reads)
    dtype: str = "float16"  # extraction dtype


def _make_image_world(root: Path, spec: WorldSpec) -> None:
    make_data(root, spec.images, seed=spec.seed, difficulty=spec.difficulty, progress=False)


def nav_world_spec(spec: WorldSpec) -> NavWorldSpec:
    """The navigation world of a study's world entry; a ValueError naming an unknown `nav` field."""
    known = {f.name for f in fields(NavWorldSpec)} - {"seed", "version"}
    unknown = sorted(set(spec.nav) - known)
    if unknown:
        raise ValueError(f"world.nav: unknown field(s) {unknown}; known: {sorted(known)}")
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in spec.nav.items()}
    return NavWorldSpec(seed=spec.seed, **values)


def _make_nav_world(root: Path, spec: WorldSpec) -> None:
    make_nav_world(root, spec.connectivity, nav_world_spec(spec))


WORLD_KINDS: dict[str, WorldKind] = {
    "image": WorldKind(_make_image_world, "coco"),
    # the VLN task reads the pooled CLIP embedding of each view, in fp32 (CLIP-ViL's fp16 features did not match)
    "nav": WorldKind(_make_nav_world, "views", pooled=True, dtype="float32"),
}


class StudyAdapter(Protocol):
    """What the study needs to know about a task: the kind of world it trains on, how to point a recipe at a
    world and grids, which splits to evaluate and which of their metrics to report. A task joins the study
    with one small adapter in ADAPTERS."""

    name: str
    world_kind: str  # a key of WORLD_KINDS
    splits: tuple[str, ...]  # the splits evaluated; () = the recipe's best split
    plugins: bool  # whether the task reads several stores (a plugin's grids, concatenated channel-wise)
    metric: str  # the name of the overall metric (report headers)

    unit: str  # what a data-efficiency size counts (training questions, images, paths)

    def overrides(self, world: Path, features: list[Path]) -> list[str]: ...

    def report(self, metrics: dict[str, Any]) -> dict[str, float]: ...  # {"overall": x, "<group>": y, ...}
    # metrics: the one split's metrics when `splits` is (), else {"<split>/<metric>": value} over `splits`

    def subset(self, world: Path, n: int, seed: int, out: Path) -> Subset: ...
    # the world with only n training items (see Subset); a ValueError when the world has fewer


@dataclass(frozen=True)
class Subset:
    """A world with fewer training items: `root` is read like the world itself (only the training files differ;
    everything else links to the full world), `examples` is what the task iterates per epoch (a question, an
    image, an instruction), for the epochs of a minimum number of updates."""

    root: Path
    items: int  # training items kept (the size of the curve's x axis)
    examples: int  # training examples per epoch


def nested_choice(total: int, n: int, seed: int, what: str) -> list[int]:
    """Indices of n of `total` items, sorted: the first n of one seeded permutation, so that the subsets of a
    curve are nested (the 500 questions are among the 2000). A ValueError when n is out of range."""
    if not 0 < n <= total:
        raise ValueError(f"size {n}: the world has {total} training {what}; give sizes from 1 to {total}")
    return sorted(int(i) for i in np.random.default_rng(seed).permutation(total)[:n])


def shadow_world(world: Path, out: Path, replaced: dict[str, Any]) -> None:
    """Makes `out` read like `world`: every entry a symlink to the world's, except the files of `replaced`
    (relative path -> JSON data), written anew (their folders made real, with their other entries linked)."""
    out.mkdir(parents=True, exist_ok=True)
    real = {Path(r).parts[:i] for r in replaced for i in range(1, len(Path(r).parts))}

    def mirror(src: Path, dst: Path, prefix: tuple[str, ...]) -> None:
        for entry in sorted(src.iterdir()):
            rel = (*prefix, entry.name)
            target = dst / entry.name
            if rel in real:
                target.mkdir(exist_ok=True)
                mirror(entry, target, rel)
            elif "/".join(rel) not in replaced and not target.is_symlink() and not target.exists():
                try:
                    target.symlink_to(entry.resolve())
                except FileExistsError:  # another process of the study (--only) linked it first
                    pass

    mirror(world, out, ())
    for rel, data in replaced.items():
        atomic_write_json(out / rel, data)


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise ValueError(f"{path}: cannot read the training file for a data-efficiency subset ({err})") from None


class VqaAdapter:
    """VQA (vqa task): questions of <world>/vqa, grids from the stores; overall + per question type."""

    name, world_kind, splits, metric, plugins = "vqa", "image", (), "accuracy", True

    def overrides(self, world: Path, features: list[Path]) -> list[str]:
        return [f"task.data_dir={world / 'vqa'}", f"task.features=[{', '.join(str(f) for f in features)}]"]

    def report(self, metrics: dict[str, Any]) -> dict[str, float]:
        out = {"overall": float(metrics["accuracy"])}
        out.update({k[len("qtype/"):]: float(v) for k, v in sorted(metrics.items()) if k.startswith("qtype/")})
        return out

    unit = "questions"
    QUESTIONS = "vqa/v2_OpenEnded_mscoco_train2014_questions.json"
    ANNOTATIONS = "vqa/v2_mscoco_train2014_annotations.json"

    def subset(self, world: Path, n: int, seed: int, out: Path) -> Subset:
        questions, annotations = _read_json(world / self.QUESTIONS), _read_json(world / self.ANNOTATIONS)
        keep = [questions["questions"][i] for i in
                nested_choice(len(questions["questions"]), n, seed, "questions")]
        ids = {q["question_id"] for q in keep}
        shadow_world(world, out, {
            self.QUESTIONS: {**questions, "questions": keep},
            self.ANNOTATIONS: {**annotations, "annotations": [a for a in annotations["annotations"]
                                                              if a["question_id"] in ids]}})
        return Subset(out, n, n)


class CaptionAdapter:
    """Captioning (caption task): the world's Karpathy file, grids from the stores; CIDEr + BLEU-4, ROUGE-L."""

    name, world_kind, splits, metric, plugins = "caption", "image", (), "CIDEr", True

    def overrides(self, world: Path, features: list[Path]) -> list[str]:
        return [f"task.karpathy_file={world / 'captions' / 'dataset_coco.json'}",
                f"task.features=[{', '.join(str(f) for f in features)}]", "task.feature_encoder=''",
                "task.feature_preset=''"]

    def report(self, metrics: dict[str, Any]) -> dict[str, float]:
        return {"overall": float(metrics["CIDEr"]),
                **{k: float(metrics[k]) for k in ("Bleu_4", "ROUGE_L", "METEOR") if k in metrics}}

    unit = "images"
    KARPATHY = "captions/dataset_coco.json"

    def subset(self, world: Path, n: int, seed: int, out: Path) -> Subset:
        data = _read_json(world / self.KARPATHY)
        train = [i for i, im in enumerate(data["images"]) if im["split"] in ("train", "restval")]
        drop = set(train) - {train[i] for i in nested_choice(len(train), n, seed, "images")}
        images = [im for i, im in enumerate(data["images"]) if i not in drop]
        shadow_world(world, out, {self.KARPATHY: {**data, "images": images}})
        return Subset(out, n, n)


class VlnAdapter:
    """Navigation (vln task, follower): the navigation world's R2R files, graphs and vocabulary, the views'
    pooled embeddings from one store; SR (val_unseen) overall, then SPL and val_seen."""

    name, world_kind, splits, metric, plugins = "vln", "nav", ("val_seen", "val_unseen"), "SR val_unseen", False

    def overrides(self, world: Path, features: list[Path]) -> list[str]:
        if len(features) != 1:
            raise ValueError("study: the vln task reads one view-feature store; a plugin of several is not supported")
        return [f"task.data_dir={world}", f"task.connectivity={world / 'connectivity'}",
                f"task.vocab={world / 'train_vocab.txt'}", f"task.features={features[0]}", "task.feature_encoder=''"]

    def report(self, metrics: dict[str, Any]) -> dict[str, float]:
        return {"overall": float(metrics["val_unseen/sr"]), "SPL val_unseen": float(metrics["val_unseen/spl"]),
                "SR val_seen": float(metrics["val_seen/sr"]), "SPL val_seen": float(metrics["val_seen/spl"])}

    unit = "paths"
    TRAIN = "R2R_train.json"

    def subset(self, world: Path, n: int, seed: int, out: Path) -> Subset:
        paths = _read_json(world / self.TRAIN)
        keep = [paths[i] for i in nested_choice(len(paths), n, seed, "paths")]
        shadow_world(world, out, {self.TRAIN: keep})
        return Subset(out, n, sum(len(p["instructions"]) for p in keep))  # the follower iterates instructions


ADAPTERS: dict[str, StudyAdapter] = {"vqa": VqaAdapter(), "caption": CaptionAdapter(), "vln": VlnAdapter()}

PRETRAIN_DATA = {  # pre-training task -> its data overrides for a synthetic world
    "clip": lambda w: [f"task.data.root={w / 'captions'}", f"task.data.image_root={w / 'coco'}"],
    "classify": lambda w: [f"task.root={w}"],
}


__all__ = ["ADAPTERS", "PRETRAIN_DATA", "WORLD_KINDS", "CaptionAdapter", "StudyAdapter", "Subset", "VlnAdapter",
           "VqaAdapter", "WorldKind", "WorldSpec", "nav_world_spec", "nested_choice", "shadow_world"]
