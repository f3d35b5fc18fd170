"""The contrastive CLIP task: trains an open_clip CLIP (any open_clip architecture by name, or clipvil's small
`clipvil-rn-tiny` / `clipvil-vit-tiny`) with open_clip's own `ClipLoss`, from random weights or from a local
weight file (further pre-training in-domain, as the paper does before its VQA runs).

- `task.model` IS the open_clip CLIP, so a checkpoint's `model` state dict has open_clip's key names: `clipvil
  export-clip` writes it as an open_clip checkpoint (`build_encoder(name, weights=...)`, `clipvil extract
  --weights`, `open_clip.create_model(name, pretrained=...)` load it), and the retrieval / zero-shot VQA tasks
  evaluate it (`clipvil evaluate configs/retrieval/... --checkpoint <run>/checkpoints/best.pt`).
- Loss: `open_clip.loss.ClipLoss(local_loss, gather_with_grad, rank, world_size)` with the learnable
  temperature (`logit_scale`, clamped to ln(max_logit_scale) before each use, as open_clip's trainer clamps it
  after each step). Under DDP with `local_loss` + `gather_with_grad`, every rank scores its own rows against
  the whole global micro-batch and gradients flow through the gather, so W ranks of B/W pairs train exactly
  as one process with B (ResNet BatchNorm excepted: its statistics are per rank). With grad_accum > 1 the
  negatives are those of a micro-batch, not of the whole update (open_clip's --accum-freq caches features
  instead; the engine's accumulation does not).
- Freezing: `freeze_text` (the text tower), `freeze_image_stages` (the first N image stages, see
  `clip_model`). Layer-wise learning rates: the engine's `extra_optimizers` with module paths of the CLIP,
  e.g. `extra_optimizers: {trunk: {modules: [visual.layer1, visual.layer2], optim: {lr: 1e-5}}}` — each
  optimizer owns its sub-modules with its own lr and schedule, saved and resumed like the main one. (No
  per-parameter-group lr inside one optimizer: the engine builds one group per optimizer.)
- Data: `task.data` (clip_data.ImageTextData: Karpathy COCO / Flickr30k, COCO caption JSON, LXMERT captions,
  CSV/TSV). Training uses open_clip's training transform (RandomResizedCrop), its randomness seeded per
  (train.seed, epoch, item), so resume and DDP are exact. Evaluation: zero-shot image<->text retrieval on a
  held-out split, R@1/5/10 both ways; the primary metric is `rsum` (the sum of the six recalls).
- WebDataset shards (`task.data.format: shards`) are read as an indexed corpus (one pass records each
  sample's caption and tar member, cached in the run directory), so the engine's resumable samplers apply:
  a killed run resumes at its exact sample, and DDP sees the single-process batches.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from open_clip.loss import ClipLoss
from torch.utils.data import Dataset

from clipvil.engine.registry import RunContext, register_task
from clipvil.engine.task import Batch, BatchLayout, ResumableSampler, TaskModule
from clipvil.families.clip.data import (
    ImageTextData,
    PairDataset,
    RetrievalSet,
    collate_pairs,
    read_pairs,
    retrieval_metrics,
    tagged_sampler,
)
from clipvil.families.clip.model import (
    clip_transforms,
    create_clip,
    freeze,
    set_frozen_batchnorm_eval,
    tokenizer,
)


@dataclass
class ClipConfig:
    """The contrastive CLIP task's settings (YAML section `task`)."""

    model: str = "clipvil-rn-tiny"  # open_clip architecture (RN50, ViT-B-32, clipvil-rn-tiny, clipvil-vit-tiny ...)
    weights: Path | None = None  # start from this local file (OpenAI RN50.pt archive, open_clip checkpoint,
    # safetensors); None: random weights
    quick_gelu: bool | None = None  # None: QuickGELU for OpenAI archives, else the architecture's default
    data: ImageTextData = field(default_factory=ImageTextData)  # the image-caption pairs
    augment: bool = True  # open_clip's training transform (random resized crop); false: the eval transform
    freeze_text: bool = False  # keep the text tower fixed
    freeze_image_stages: int = 0  # keep the first N image-tower stages fixed (-1: the whole image tower)
    local_loss: bool = True  # ClipLoss(local_loss): each rank scores its own rows against all columns
    gather_with_grad: bool = True  # ClipLoss(gather_with_grad): gradients flow through the feature gather
    max_logit_scale: float = 100.0  # the temperature's upper bound (open_clip: 100)


class ClipTask(TaskModule):
    """An open_clip CLIP under open_clip's ClipLoss; evaluated by zero-shot retrieval."""

    primary_metric = "rsum"
    higher_is_better = True

    def __init__(self, cfg: ClipConfig, ctx: RunContext) -> None:
        super().__init__()
        self.cfg, self.ctx = cfg, ctx
        self.seed = torch.initial_seed()  # the engine seeds every RNG with train.seed right before this
        self.model = create_clip(cfg.model, cfg.weights, cfg.quick_gelu)
        self.frozen = freeze(self.model, cfg.freeze_text, cfg.freeze_image_stages)
        set_frozen_batchnorm_eval(self.model)
        self.train_transform, self.eval_transform = clip_transforms(self.model, cfg.augment)
        self.tokenize = tokenizer(cfg.model)
        self.loss = ClipLoss(local_loss=cfg.local_loss, gather_with_grad=cfg.gather_with_grad,
                             rank=ctx.rank, world_size=ctx.world_size)

    def train(self, mode: bool = True) -> ClipTask:
        super().train(mode)
        set_frozen_batchnorm_eval(self.model)  # frozen stages keep their BatchNorm statistics
        return self

    def dataset(self, split: str) -> Dataset:
        pairs = read_pairs(self.cfg.data, split, self.ctx)
        if split == self._train_split():
            return PairDataset(pairs, self.train_transform, self.tokenize, self.seed)
        data = self.cfg.data
        return RetrievalSet(pairs, self.eval_transform, self.tokenize, data.captions_per_image, data.max_images)

    def _train_split(self) -> str:
        return "train" if "train" in self.cfg.data.splits else next(iter(self.cfg.data.splits))

    def batch_sampler(self, split: str, dataset: Dataset, layout: BatchLayout) -> ResumableSampler:
        if split != self._train_split():
            raise ValueError(f"clip task: split {split!r} is a retrieval set; train on {self._train_split()!r}")
        return tagged_sampler(dataset, layout)

    def collate(self, items: list[dict[str, Any]]) -> Batch:
        return collate_pairs(items)

    def forward(self, batch: Batch) -> tuple[torch.Tensor, dict[str, float]]:
        with torch.no_grad():
            self.model.logit_scale.clamp_(0, math.log(self.cfg.max_logit_scale))
        image, text, scale = self.model(batch["image"], batch["text"])  # [b, D], [b, D], []
        loss = self.loss(image, text, scale)
        return loss, {"logit_scale": float(scale.detach())}

    def artifacts(self) -> dict[str, Any]:
        return {"open_clip_model": self.cfg.model, "frozen": self.frozen,
                "weights": str(self.cfg.weights) if self.cfg.weights else None}

    @torch.no_grad()
    def evaluate(self, batches: Iterable[Batch], split: str, out_dir: Path | None) -> dict[str, Any]:
        return retrieval_metrics(self.model, batches)


def _make_task(cfg: ClipConfig, ctx: RunContext) -> ClipTask:
    return ClipTask(cfg, ctx)


register_task("clip", ClipConfig, _make_task)
