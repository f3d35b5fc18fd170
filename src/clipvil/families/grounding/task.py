"""The visual-grounding task: cached CLIP grids + a referring expression → the object's box (acc@0.5).

Data (`task.dataset`):

- ``refcoco`` / ``refcoco+`` / ``refcocog`` / ``refclef``: lichengunc/refer's official files under
  ``data_root/<dataset>/`` (``refs(<split_by>).p`` + ``instances.json``, read by `clipvil.data.refer` with a
  restricted unpickler), or a JSON refs file with inline boxes (``refs_json``; image sizes are then read from
  the image headers under ``image_root``). Splits: train, val, testA, testB (refcoco/+), val, test (refcocog umd).
- ``synthetic``: the referring expressions of a synthetic world (``data_root`` = its root; splits train, val,
  test), each object that a description singles out ("the red circle").

Every (ref, sentence) pair is one example. Boxes go to the head's unit frame through the store's preset
(`clipvil.families.grounding.frame`: resized, padded and center-cropped inputs all map exactly), predictions come
back to image pixels the same way, and evaluation scores accuracy at IoU >= 0.5 (`clipvil.metrics.grounding`)
against the original boxes, writing ``grounding_results.json``. The word vocabulary and the image sizes are
made once (rank 0) in the run directory; the vocabulary and the feature provenance go into every checkpoint,
so `clipvil predict --expression` needs only a checkpoint.
"""

from __future__ import annotations

import json
import logging
import string
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from PIL import Image
from torch.utils.data import Dataset

from clipvil.common.atomic import atomic_write_json
from clipvil.data.question_vocab import QuestionVocab, question_tokens
from clipvil.data.refer import RefExample, read_refer, read_refer_json, read_synthetic_refs, refer_files
from clipvil.data.validate import get_field, load_json
from clipvil.engine.grid_source import GridSource
from clipvil.engine.models import build_model
from clipvil.engine.registry import RunContext, register_task
from clipvil.engine.task import Batch, TaskModule
from clipvil.families.grounding.frame import crops_borders, grid_frame
from clipvil.families.grounding.loss import GroundingLossWeights, box_cell, grounding_loss
from clipvil.families.grounding.model import content_extent
from clipvil.metrics.grounding import box_iou_xywh, grounding_accuracy
from clipvil.types import GridFeatures

log = logging.getLogger(__name__)
VOCAB_FILE, SIZES_FILE, RESULTS_FILE = "grounding_vocab.json", "image_sizes.json", "grounding_results.json"
KEY_FIELDS = {"file_name", "stem", "parent", "image_id"}
Dataset_ = Literal["synthetic", "refcoco", "refcoco+", "refcocog", "refclef"]


@dataclass
class GroundingTaskConfig:
    """The grounding task's settings (YAML section `task`)."""

    dataset: Dataset_ = "synthetic"  # which referring expressions (module docstring)
    data_root: Path = Path("data/synthetic")  # synthetic: the world's root; official: lichengunc/refer's data
    # root holding <dataset>/refs(<split_by>).p and instances.json
    split_by: str = ""  # official partition (unc, umd, google); "": the dataset's usual one (refcocog: umd)
    refs_json: Path | None = None  # a JSON refs file with inline boxes, read instead of the pickles
    image_root: Path | None = None  # the images (COCO train2014/): their sizes when instances.json gives none
    # (JSON refs); None: data_root for the synthetic world
    features: list[Path] = field(default_factory=lambda: [Path("runs/features/grounding")])  # feature store(s)
    extra_features: list[Path] = field(default_factory=list)  # more stores searched as one with the first
    feature_key: str = "{parent}/{stem}"  # an image's store id from {file_name} (path without suffix),
    # {stem}, {parent} (its folder's name) and {image_id}
    model: str = "grid_grounding"  # the head, by registered name (family "grounding")
    preset: str = "default"  # the head's preset (default | tiny)
    model_overrides: dict[str, Any] = field(default_factory=dict)  # fields of the head's config to change
    loss_cell: float = 1.0  # weight of the cell cross-entropy
    loss_l1: float = 5.0  # weight of the L1 box term (DETR / TransVG)
    loss_giou: float = 2.0  # weight of the GIoU box term (DETR / TransVG)
    max_tokens: int = 20  # expressions are clipped to this many words (TransVG: 20; 40 for RefCOCOg)
    vocab_min_count: int = 1  # words seen at least this often in vocab_splits
    vocab_splits: list[str] = field(default_factory=lambda: ["train"])  # splits whose expressions build the
    # word vocabulary
    iou_threshold: float = 0.5  # a prediction is correct at IoU >= this
    feature_encoder: str = ""  # when set, the stores must hold grids of this encoder (e.g. "RN50")
    feature_preset: str = ""  # ... made with this input preset
    feature_layer: str = ""  # ... taken from this layer
    preload_features: bool | None = None  # read the stores into memory (None: when they fit preload_max_gb)
    preload_max_gb: float = 4.0  # the size rule of preload_features: None


@dataclass(frozen=True)
class Example:
    """One referring expression of one ref."""

    id: str  # "<ref_id>/<sentence index>"
    ref: RefExample
    sentence: str
    key: str  # the image's store id
    tokens: list[int]
    image_hw: tuple[int, int]


class GroundingDataset(Dataset):
    """One item per (ref, sentence)."""

    def __init__(self, examples: list[Example]) -> None:
        self.examples = examples

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, i: int) -> dict[str, Any]:
        ex = self.examples[i]
        return {"id": ex.id, "key": ex.key, "tokens": ex.tokens, "box": ex.ref.box_xywh, "image_hw": ex.image_hw,
                "split": ex.ref.split}


class GroundingTask(TaskModule):
    """A grounding head over cached grids; forward(batch) → cell CE + L1 + GIoU."""

    primary_metric = "accuracy"
    higher_is_better = True

    def __init__(self, cfg: GroundingTaskConfig, ctx: RunContext) -> None:
        super().__init__()
        self.cfg, self.ctx = cfg, ctx
        check_key_template(cfg.feature_key)
        expect = {"encoder": cfg.feature_encoder, "preset": cfg.feature_preset, "layer": cfg.feature_layer}
        self.source = GridSource(cfg.features, cfg.extra_features, expect, cfg.preload_features,
                                 cfg.preload_max_gb)
        self.provenance = self.source.provenance
        if "plugin" in self.provenance:
            raise ValueError("grounding task: task.features lists several stores; the box frame needs one preset "
                             "and stride — use one store (task.extra_features to search several)")
        grid_frame(self.provenance, (1, 1), (1, 1))  # a store without preset/stride: fail now, naming it
        self._refs: list[RefExample] | None = None
        self.words = self._vocabulary()
        self.sizes = self._image_sizes()
        self.weights = GroundingLossWeights(cfg.loss_cell, cfg.loss_l1, cfg.loss_giou)
        self.model = build_model(cfg.model, cfg.preset, cfg.model_overrides, grid_dim=self.source.dim,
                                 vocab_size=len(self.words))

    # ----- data
    def refs(self) -> list[RefExample]:
        """Every ref of the configured dataset (all splits), read once."""
        if self._refs is None:
            cfg = self.cfg
            if cfg.dataset == "synthetic":
                self._refs = read_synthetic_refs(cfg.data_root)
            elif cfg.refs_json is not None:
                self._refs = read_refer_json(cfg.refs_json)
            else:
                self._refs = read_refer(*refer_files(cfg.data_root, cfg.dataset, cfg.split_by or None))
        return self._refs

    def _split_refs(self, name: str) -> list[RefExample]:
        parts = name.split("+")
        refs = [r for r in self.refs() if r.split in parts]
        known = sorted({r.split for r in self.refs()})
        unknown = [p for p in parts if p not in known]
        if unknown:
            raise KeyError(f"grounding task: split(s) {unknown} hold no refs in {self._source_name()}; "
                           f"its splits: {known}")
        return refs

    def _source_name(self) -> str:
        cfg = self.cfg
        if cfg.dataset == "synthetic":
            return str(cfg.data_root)
        return str(cfg.refs_json or refer_files(cfg.data_root, cfg.dataset, cfg.split_by or None)[0])

    def _vocabulary(self) -> QuestionVocab:
        path = Path(self.ctx.out_dir) / VOCAB_FILE

        def make(p: Path) -> None:
            texts = (s for name in self.cfg.vocab_splits for r in self._split_refs(name) for s in r.sentences)
            vocab = QuestionVocab.build(texts, self.cfg.vocab_min_count, self.cfg.max_tokens)
            atomic_write_json(p, {"words": list(vocab.words), "max_tokens": vocab.max_tokens})

        self.ctx.prepare_once(path, make)
        return QuestionVocab.load(path)

    def _image_sizes(self) -> dict[str, tuple[int, int]]:
        path = Path(self.ctx.out_dir) / SIZES_FILE
        self.ctx.prepare_once(path, lambda p: atomic_write_json(p, self._read_sizes()))
        return {k: (int(v[0]), int(v[1])) for k, v in json.loads(path.read_text()).items()}

    def _read_sizes(self) -> dict[str, list[int]]:
        """{file_name: [H, W]} of every ref's image: instances.json's sizes, else the image headers."""
        cfg = self.cfg
        names = sorted({r.file_name for r in self.refs()})
        if cfg.dataset != "synthetic" and cfg.refs_json is None:
            ipath = refer_files(cfg.data_root, cfg.dataset, cfg.split_by or None)[1]
            images = get_field(load_json(ipath), "images", ipath, None, list)
            sizes = {str(im["file_name"]): [int(im["height"]), int(im["width"])] for im in images
                     if "height" in im and "width" in im}
            if all(n in sizes for n in names):
                return {n: sizes[n] for n in names}
        root = cfg.image_root or (cfg.data_root if cfg.dataset == "synthetic" else None)
        if root is None:
            raise ValueError("grounding task: set task.image_root (the images, for their sizes): the refs file "
                             "gives no image sizes")
        out = {}
        for n in names:
            try:
                with Image.open(Path(root) / n) as im:
                    out[n] = [im.height, im.width]
            except OSError as err:
                raise FileNotFoundError(f"{Path(root) / n}: cannot read the image's size ({err})") from None
        return out

    def feature_key(self, ref: RefExample) -> str:
        """The store id of a ref's image."""
        p = Path(ref.file_name)
        return self.cfg.feature_key.format(file_name=p.with_suffix("").as_posix(), stem=p.stem,
                                           parent=p.parent.name, image_id=ref.image_id)

    def dataset(self, split: str) -> Dataset:
        refs = self._split_refs(split)
        examples = [Example(f"{r.ref_id}/{k}", r, s, self.feature_key(r), self.words.encode(s),
                            self.sizes[r.file_name]) for r in refs for k, s in enumerate(r.sentences)]
        missing = self.source.missing([ex.key for ex in examples])
        if missing:
            raise KeyError(f"{self.cfg.features[0]}: no features for {len(missing)} image(s) of split {split!r} "
                           f"(e.g. {missing[:3]}; task.feature_key={self.cfg.feature_key!r}); extract them first")
        if crops_borders(self.provenance):
            self._warn_cropped(examples, split)
        return GroundingDataset(examples)

    def _warn_cropped(self, examples: list[Example], split: str) -> None:
        hw = self.source.grids([examples[0].key]).hw if examples else (1, 1)  # crops give one grid size
        cut = sum(1 for ex in examples
                  if grid_frame(self.provenance, ex.image_hw, hw).visible(ex.ref.box_xywh) < 0.999)
        if cut:
            log.warning("grounding task: the store's preset %r center-crops: %d of %d expressions of split %r have "
                        "boxes cut by the crop (clipped for training, scored on the full image)",
                        self.provenance["preset"], cut, len(examples), split)

    def collate(self, items: list[dict[str, Any]]) -> Batch:
        grid = pad_stack([self.source.grids([it["key"]]) for it in items])
        extents = content_extent(grid.mask, grid.hw).tolist()  # [B, 2] (rows, cols)
        frames = [grid_frame(self.provenance, it["image_hw"], tuple(e)) for it, e in zip(items, extents)]
        target = torch.tensor([f.to_unit(it["box"]) for f, it in zip(frames, items)], dtype=torch.float32)  # [B, 4]
        return {"grid": grid, "tokens": question_tokens([it["tokens"] for it in items]), "target": target,
                "ids": [it["id"] for it in items], "frames": frames, "boxes": [it["box"] for it in items],
                "splits": [it["split"] for it in items]}

    # ----- training and evaluation
    def forward(self, batch: Batch) -> tuple[torch.Tensor, dict[str, float]]:
        grid: GridFeatures = batch["grid"]
        out = self.model(grid, batch["tokens"])
        cells = box_cell(batch["target"], grid.mask, grid.hw)  # [B]
        return grounding_loss(out, batch["target"], cells, self.weights)

    def artifacts(self) -> dict[str, Any]:
        return {"grounding_vocab": {"words": list(self.words.words), "max_tokens": self.words.max_tokens},
                "features": self.provenance}

    @torch.no_grad()
    def evaluate(self, batches: Iterable[Batch], split: str, out_dir: Path | None) -> dict[str, Any]:
        preds, golds, splits, rows = {}, {}, {}, []
        for batch in batches:
            boxes = self.model(batch["grid"], batch["tokens"]).boxes.float().cpu().tolist()  # [B, 4] unit xyxy
            for eid, frame, box, gold, sp in zip(batch["ids"], batch["frames"], boxes, batch["boxes"],
                                                 batch["splits"]):
                pred = frame.to_pixels(box)
                preds[eid], golds[eid], splits[eid] = pred, tuple(gold), sp
                rows.append({"id": eid, "split": sp, "box": [round(v, 2) for v in pred],
                             "gold": list(gold), "iou": round(float(box_iou_xywh(pred, gold)), 4)})
        if out_dir is not None:
            atomic_write_json(Path(out_dir) / RESULTS_FILE, rows)
        scores = grounding_accuracy(preds, golds, splits, self.cfg.iou_threshold)
        metrics: dict[str, Any] = {"accuracy": scores["accuracy"], "mean_iou": scores["mean_iou"],
                                   "n_expressions": scores["n"]}
        if "+" in split:
            metrics.update({f"accuracy/{s}": v for s, v in scores["per_split"].items()})  # type: ignore[union-attr]
        return metrics


def pad_stack(grids: list[GridFeatures]) -> GridFeatures:
    """One batch from single-image grids of possibly different (h, w) (portrait and landscape pads): each is
    placed top-left in the largest (h, w), the added cells zero and masked out. Pooled embeddings are kept
    when every grid has one."""
    hmax, wmax = max(g.hw[0] for g in grids), max(g.hw[1] for g in grids)
    c = grids[0].dim
    feats = torch.zeros(len(grids), hmax, wmax, c, dtype=grids[0].feats.dtype)  # [B, h, w, C]
    mask = torch.zeros(len(grids), hmax, wmax, dtype=torch.bool)  # [B, h, w]
    for i, g in enumerate(grids):
        h, w = g.hw
        feats[i, :h, :w] = g.feats[0].reshape(h, w, c)
        mask[i, :h, :w] = g.mask[0].reshape(h, w)
    pooled = None
    if all(g.pooled is not None for g in grids):
        pooled = torch.cat([g.pooled for g in grids])  # type: ignore[misc]  # [B, D]
    return GridFeatures(feats.reshape(len(grids), hmax * wmax, c), mask.reshape(len(grids), -1), (hmax, wmax), pooled)


def check_key_template(template: str) -> None:
    """Refuses a feature_key that uses an unknown field, or none."""
    fields = {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}
    unknown = sorted(fields - KEY_FIELDS)
    if unknown or not fields:
        used = f"unknown field(s) {unknown}" if unknown else "no field"
        raise ValueError(f"task.feature_key: {template!r} uses {used}; known: {sorted(KEY_FIELDS)}")


def _make_task(cfg: GroundingTaskConfig, ctx: RunContext) -> GroundingTask:
    return GroundingTask(cfg, ctx)


def _predictor(cfg: GroundingTaskConfig, artifacts: dict[str, Any], device: torch.device) -> Any:
    from clipvil.families.grounding.predict import GroundingPredictor

    return GroundingPredictor.from_artifacts(cfg, artifacts, device)


register_task("grounding", GroundingTaskConfig, _make_task, predictor=_predictor)
