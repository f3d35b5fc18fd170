"""The ImageNet-style baseline: a supervised classifier on the same image tower as CLIP (the paper's "ImageNet
ResNet-50" row, made in-domain on the synthetic world).

- Tower: the image tower (`visual`) of an open_clip architecture (`model`, e.g. clipvil-rn-tiny), its pooled
  embedding [B, D] -> Linear(D, C); or a timm model by name (`timm_model`, e.g. resnet50, its own classifier).
- Labels: multi-label BCE on the synthetic scenes' shapes + colours (`labels: scenes`,
  `clipvil.data.synthetic.labels`), or single-label CE on ImageNet-style image folders (`labels: folder`) or on
  WebDataset shards whose samples carry a `.cls` class index (`labels: shards`; the class names from the
  corpus's `corpus.json`, as `clipvil make-corpus` writes it: the shape of each image's largest object).
- Evaluation: multi-label: mean average precision over labels (`mAP`, primary) and per-label accuracy at 0.5;
  single-label: top-1 / top-5 accuracy (`accuracy`, primary).
- Export (`clipvil export-clip --checkpoint <run>/checkpoints/best.pt --out DIR`): `task.model.visual` is an
  open_clip image tower under open_clip's key names, so it is written as an open_clip checkpoint of the whole
  architecture (the text tower at its random initialisation, `logit_scale` at CLIP's init) that
  `build_encoder(model, weights=DIR/<model>.pt)` and `clipvil extract --encoder <model> --weights ...` load (they
  read `visual.*` only). A timm resnet50 is written as a timm state dict for `build_encoder("imagenet-rn50")`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

from clipvil.data.image_folder import LabelledImageDataset, LabelledImages, read_image_folder
from clipvil.data.synthetic.labels import read_scene_labels
from clipvil.engine.registry import RunContext, register_task
from clipvil.engine.task import Batch, TaskModule
from clipvil.families.clip.model import clip_transforms, create_clip
from clipvil.families.clip.shards import read_shard_pairs


def read_shard_labels(root: Path, pattern: str, ctx: RunContext) -> LabelledImages:
    """The samples of shards `root`/`pattern` with their `.cls` class indices; class names from
    `root`/corpus.json ("classes"). Errors name the file and the sample."""
    manifest = root / "corpus.json"
    try:
        classes = tuple(json.loads(manifest.read_text())["classes"])
    except FileNotFoundError:
        raise FileNotFoundError(f"{manifest}: not found (labels: shards needs the corpus's class names)") from None
    except (ValueError, KeyError, TypeError) as err:
        raise ValueError(f"{manifest}: no class list ({type(err).__name__}: {err})") from None
    pairs = read_shard_pairs(str(root / pattern), Path(ctx.out_dir), ctx)
    for member, cls in zip(pairs.paths, pairs.classes):
        if cls is None or not 0 <= cls < len(classes):
            raise ValueError(f"{member.shard}: sample {member.key!r}: needs a .cls class index in 0..{len(classes) - 1}"
                             f", got {cls}")
    targets = np.asarray(pairs.classes, dtype=np.int64)  # [N]
    return LabelledImages(root / pattern, classes, pairs.paths, targets)


@dataclass
class ClassifyConfig:
    """The supervised classifier's settings (YAML section `task`)."""

    model: str = "clipvil-rn-tiny"  # open_clip architecture whose image tower is trained
    timm_model: str = ""  # instead a timm architecture by name (e.g. resnet50), random init
    labels: Literal["scenes", "folder", "shards"] = "scenes"  # synthetic scenes (multi-label) | image folders
    # (CE) | WebDataset shards with .cls members (CE; root holds corpus.json with the class names)
    root: Path = Path("runs/demo/world")  # scenes: the synthetic world; folder: the folder holding the splits
    splits: dict[str, str] = field(default_factory=lambda: {"train": "train", "val": "val"})  # split -> scenes:
    # the world's split; folder: a sub-folder of root in torchvision ImageFolder layout (<class>/<image>);
    # shards: a brace pattern of tar shards relative to root ("train/web-{000000..000099}.tar")
    label_kind: str = "attribute"  # scenes: attribute (6 shapes + 8 colours) | shape | color | object
    augment: bool = True  # the tower's training transform (random resized crop); false: the eval transform


class Classifier(nn.Module):
    """An image tower's pooled embedding -> class logits."""

    def __init__(self, visual: nn.Module, embed_dim: int, n_classes: int) -> None:
        super().__init__()
        self.visual = visual  # open_clip image tower (open_clip key names, for export)
        self.head = nn.Linear(embed_dim, n_classes)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.head(self.visual(pixels))  # [B, C]


def average_precision(scores: np.ndarray, targets: np.ndarray) -> float:
    """AP of one label (percent): the mean over positives of the precision at each positive's rank (scores
    sorted descending, ties in input order); NaN when the label has no positive."""
    order = np.argsort(-scores, kind="stable")
    hits = targets[order] > 0.5
    if not hits.any():
        return float("nan")
    precision = np.cumsum(hits) / np.arange(1, len(hits) + 1)
    return 100.0 * float(precision[hits].mean())


class ClassifyTask(TaskModule):
    """Image tower + linear head under BCE (multi-label) or CE (single label)."""

    higher_is_better = True

    def __init__(self, cfg: ClassifyConfig, ctx: RunContext) -> None:
        super().__init__()
        self.cfg, self.ctx = cfg, ctx
        self._labels: dict[str, LabelledImages] = {}
        train = self._read(self._train_split())
        self.classes, self.multi_label = train.classes, train.multi_label
        self.primary_metric = "mAP" if self.multi_label else "accuracy"
        if cfg.timm_model:
            self.model, self.train_transform, self.eval_transform = self._timm(len(self.classes))
        else:
            clip = create_clip(cfg.model)
            self.train_transform, self.eval_transform = clip_transforms(clip, cfg.augment)
            self.model = Classifier(clip.visual, int(clip.visual.output_dim), len(self.classes))

    def _timm(self, n_classes: int) -> tuple[nn.Module, Any, Any]:
        import timm
        from timm.data import create_transform, resolve_data_config

        model = timm.create_model(self.cfg.timm_model, pretrained=False, num_classes=n_classes)
        data_cfg = resolve_data_config({}, model=model)
        evaluate = create_transform(**data_cfg, is_training=False)
        train = create_transform(**data_cfg, is_training=True) if self.cfg.augment else evaluate
        return model, train, evaluate

    def _train_split(self) -> str:
        return "train" if "train" in self.cfg.splits else next(iter(self.cfg.splits))

    def _read(self, split: str) -> LabelledImages:
        if split not in self.cfg.splits:
            raise KeyError(f"classify task: unknown split {split!r}; configured: {sorted(self.cfg.splits)}")
        if split not in self._labels:
            spec = self.cfg.splits[split]
            if self.cfg.labels == "scenes":
                self._labels[split] = read_scene_labels(self.cfg.root, spec, self.cfg.label_kind)
            elif self.cfg.labels == "shards":
                self._labels[split] = read_shard_labels(Path(self.cfg.root), spec, self.ctx)
            else:
                self._labels[split] = read_image_folder(Path(self.cfg.root) / spec)
            if self._labels[split].classes != getattr(self, "classes", self._labels[split].classes):
                raise ValueError(f"{self._labels[split].source}: classes differ from the train split's")
        return self._labels[split]

    def dataset(self, split: str) -> Dataset:
        transform = self.train_transform if split == self._train_split() else self.eval_transform
        return LabelledImageDataset(self._read(split), transform)

    def collate(self, items: list[Any]) -> Batch:
        pixels = torch.stack([p for p, _ in items])  # [B, 3, H, W]
        targets = torch.stack([t for _, t in items])  # [B] | [B, C]
        return {"image": pixels, "target": targets}

    def forward(self, batch: Batch) -> tuple[torch.Tensor, dict[str, float]]:
        logits = self.model(batch["image"])  # [B, C]
        if self.multi_label:
            return F.binary_cross_entropy_with_logits(logits.float(), batch["target"].float()), {}
        return F.cross_entropy(logits.float(), batch["target"]), {}

    def artifacts(self) -> dict[str, Any]:
        return {"classes": list(self.classes), "multi_label": self.multi_label,
                "open_clip_model": "" if self.cfg.timm_model else self.cfg.model, "timm_model": self.cfg.timm_model}

    @torch.no_grad()
    def evaluate(self, batches: Iterable[Batch], split: str, out_dir: Path | None) -> dict[str, Any]:
        scores, targets = [], []
        for batch in batches:
            scores.append(self.model(batch["image"]).float().cpu())  # [B, C]
            targets.append(batch["target"].cpu())
        s, t = torch.cat(scores).numpy(), torch.cat(targets).numpy()
        if self.multi_label:
            aps = [average_precision(s[:, c], t[:, c]) for c in range(s.shape[1])]
            per = {f"AP/{name}": ap for name, ap in zip(self.classes, aps)}
            label_acc = 100.0 * float(((s > 0) == (t > 0.5)).mean())
            return {"mAP": float(np.nanmean(aps)), "label_accuracy": label_acc, "n_images": len(t), **per}
        top5 = np.argsort(-s, axis=1)[:, :5]
        return {"accuracy": 100.0 * float((top5[:, 0] == t).mean()),
                "top5": 100.0 * float((top5 == t[:, None]).any(axis=1).mean()), "n_images": len(t)}


def _make_task(cfg: ClassifyConfig, ctx: RunContext) -> ClassifyTask:
    return ClassifyTask(cfg, ctx)


register_task("classify", ClassifyConfig, _make_task)
