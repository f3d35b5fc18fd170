"""Zero-shot image<->text retrieval with an open_clip CLIP: R@1/5/10 in both directions, no training.

Test sets in their usual formats (`task.data`, clip_data.ImageTextData):
- COCO Karpathy 5k test: `format: karpathy`, Karpathy's dataset_coco.json, `splits: {test: test}`,
  `captions_per_image: 5` (25,010 captions -> the first 5 of each of the 5,000 images); COCO 1k: `max_images: 1000`;
- Flickr30k 1k test: `format: flickr30k`, Karpathy's dataset_flickr30k.json, `splits: {test: test}`;
- the synthetic world: its captions/dataset_coco.json (`configs/retrieval/synthetic.yaml`).

The weights: `task.weights` (an OpenAI archive, an open_clip checkpoint, `clipvil export-clip` output):
`clipvil evaluate configs/retrieval/<name>.yaml --weights RN50.pt`; or a clip training run's checkpoint,
whose `model` is the same open_clip CLIP: `clipvil evaluate ... --checkpoint <run>/checkpoints/best.pt`.
Evaluation writes `ranks.json` (each image's text-retrieval rank, each caption's image-retrieval rank).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset

from clipvil.common.atomic import atomic_write_json
from clipvil.engine.registry import RunContext, register_task
from clipvil.engine.task import Batch, TaskModule
from clipvil.families.clip.data import ImageTextData, RetrievalSet, collate_pairs, embed_retrieval, read_pairs
from clipvil.families.clip.model import clip_transforms, create_clip, tokenizer
from clipvil.metrics.retrieval import retrieval_ranks, retrieval_recalls


def _test_data() -> ImageTextData:
    return ImageTextData(splits={"test": "test"}, captions_per_image=5)


@dataclass
class RetrievalConfig:
    """Zero-shot retrieval settings (YAML section `task`)."""

    model: str = "ViT-B-32"  # open_clip architecture
    weights: Path | None = None  # local weight file; None: random weights (or a --checkpoint's)
    quick_gelu: bool | None = None  # None: QuickGELU for OpenAI archives, else the architecture's default
    data: ImageTextData = field(default_factory=_test_data)  # the test sets (default split "test", 5 captions)


class ZeroShotTask(TaskModule):
    """Base of the evaluation-only CLIP tasks: `self.model` is an open_clip CLIP; there is nothing to train."""

    def _build_clip(self, name: str, weights: Path | None, quick_gelu: bool | None) -> None:
        self.model = create_clip(name, weights, quick_gelu)
        _, self.transform = clip_transforms(self.model, augment=False)
        self.tokenize = tokenizer(name)

    def forward(self, batch: Batch) -> tuple[torch.Tensor, dict[str, float]]:
        raise RuntimeError(f"{type(self).__name__} is evaluation only (zero-shot): use `clipvil evaluate`, or "
                           "train CLIP with the clip task")


class RetrievalTask(ZeroShotTask):
    """Image<->text retrieval recalls of a CLIP on a test set."""

    primary_metric = "rsum"
    higher_is_better = True

    def __init__(self, cfg: RetrievalConfig, ctx: RunContext) -> None:
        super().__init__()
        self.cfg, self.ctx = cfg, ctx
        self._build_clip(cfg.model, cfg.weights, cfg.quick_gelu)

    def dataset(self, split: str) -> Dataset:
        d = self.cfg.data
        return RetrievalSet(read_pairs(d, split, self.ctx), self.transform, self.tokenize, d.captions_per_image,
                            d.max_images)

    def collate(self, items: list[dict[str, Any]]) -> Batch:
        return collate_pairs(items)

    @torch.no_grad()
    def evaluate(self, batches: Iterable[Batch], split: str, out_dir: Path | None) -> dict[str, Any]:
        image_emb, text_emb, owner = embed_retrieval(self.model, batches)
        sim = image_emb @ text_emb.T  # [I, T]
        if out_dir is not None:
            i2t, t2i = retrieval_ranks(sim, owner)
            atomic_write_json(out_dir / "ranks.json", {"i2t": i2t.tolist(), "t2i": t2i.tolist(),
                                                       "text_to_image": owner.tolist()})
        return retrieval_recalls(sim, owner)


def _make_task(cfg: RetrievalConfig, ctx: RunContext) -> RetrievalTask:
    return RetrievalTask(cfg, ctx)


register_task("retrieval", RetrievalConfig, _make_task)
