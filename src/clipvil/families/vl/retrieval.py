"""Image–text retrieval with CLIP-ViL_p: CLIP's zero-shot similarities pick each query's top-k candidates, the
pre-trained model's image-text matching head re-ranks them (an evaluation mode of the vl_pretrain task).

For every image (text retrieval) its k most CLIP-similar captions, and for every caption (image retrieval) its
k most similar images, are scored by P(matched) of the ITM head over [caption ; every grid token of the image];
re-ranked candidates go above all others (score 2 + P), the rest keep CLIP's order. Recall@1/5/10 then come
from `clipvil.metrics.retrieval` (COCO 5k / 1k, Flickr30k 1k: the Karpathy test formats of
`clipvil.families.clip.data.ImageTextData`), along with CLIP's own zero-shot recalls (``zeroshot/...``).
Each image's grid is computed once (the tower over the padded image) and kept on the CPU in fp16.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from clipvil.families.clip.data import ImageTextData
from clipvil.families.vl.images import ImageLoader
from clipvil.families.vl.text import TextCodec
from clipvil.metrics.retrieval import retrieval_recalls
from clipvil.types import GridFeatures

Block = tuple[torch.Tensor, int, int]  # an image's real cells [rows, cols, C] (fp16, CPU), rows, cols


def _test_split() -> ImageTextData:
    return ImageTextData(splits={"test": "test"}, captions_per_image=5)


@dataclass
class RerankConfig:
    """ITM re-ranking retrieval (YAML `task.retrieval` of vl_pretrain)."""

    data: ImageTextData = field(default_factory=_test_split)  # the test set(s) (Karpathy COCO / Flickr30k ...)
    splits: list[str] = field(default_factory=lambda: ["test"])  # names in data.splits evaluated this way (also
    # list them in train.eval_splits, or pass --split to `clipvil evaluate`)
    k: int = 10  # candidates re-ranked per query (CLIP's zero-shot top-k)
    clip: str = ""  # the CLIP that proposes candidates ("" = task.encoder)
    clip_weights: Path | None = None  # its weight file (None = task.encoder_weights)
    batch_size: int = 32  # (image, caption) pairs per ITM forward


@torch.no_grad()
def image_blocks(model: nn.Module, loader: ImageLoader, paths: Sequence[Path], batch: int = 8) -> list[Block]:
    """Every image's grid (its real top-left block of cells) from the tower of `model`; images go through the
    tower in batches of one padded shape (as in training), so each grid is the image's own."""
    device = next(model.parameters()).device
    blocks: list[Block | None] = [None] * len(paths)
    pending: list[tuple[int, torch.Tensor, tuple[int, int]]] = []

    def flush() -> None:
        grid = model.visual(torch.stack([p for _, p, _ in pending]).to(device), [hw for _, _, hw in pending])
        h, w = grid.hw
        feats = grid.feats.view(len(pending), h, w, -1)  # [b, h, w, C]
        mask = grid.mask.view(len(pending), h, w)  # [b, h, w]
        for j, (index, _, _) in enumerate(pending):
            rows, cols = int(mask[j].any(1).sum()), int(mask[j].any(0).sum())
            blocks[index] = (feats[j, :rows, :cols].half().cpu(), rows, cols)
        pending.clear()

    for index, path in enumerate(paths):
        pixels, hw = loader(path)
        if pending and (pending[0][1].shape != pixels.shape or len(pending) == batch):
            flush()
        pending.append((index, pixels, hw))
    if pending:
        flush()
    return [b for b in blocks if b is not None]


def pad_blocks(blocks: Sequence[Block], device: torch.device) -> GridFeatures:
    """Blocks → one padded GridFeatures [B, H*W, C] (top-left content, padded cells masked)."""
    h, w = max(b[1] for b in blocks), max(b[2] for b in blocks)
    c = blocks[0][0].shape[-1]
    feats = torch.zeros(len(blocks), h, w, c)  # [B, H, W, C]
    mask = torch.zeros(len(blocks), h, w, dtype=torch.bool)  # [B, H, W]
    for i, (block, rows, cols) in enumerate(blocks):
        feats[i, :rows, :cols] = block.float()
        mask[i, :rows, :cols] = True
    return GridFeatures(feats.view(len(blocks), h * w, c).to(device), mask.view(len(blocks), h * w).to(device), (h, w))


@torch.no_grad()
def itm_probabilities(model: nn.Module, blocks: Sequence[Block], text_ids: Sequence[list[int]], codec: TextCodec,
                      pairs: Sequence[tuple[int, int]], batch: int = 32) -> np.ndarray:
    """P(matched) of (image i, text t) for each pair, every visual token used."""
    device = next(model.parameters()).device
    out = np.empty(len(pairs), dtype=np.float64)
    for lo in range(0, len(pairs), batch):
        chunk = pairs[lo : lo + batch]
        ids, att = codec.pad([text_ids[t] for _, t in chunk])  # [b, T] x2
        grid = pad_blocks([blocks[i] for i, _ in chunk], device)
        enc = model.transformer(grid, ids.to(device), att.to(device))
        out[lo : lo + len(chunk)] = model.itm(enc.pooled).float().softmax(-1)[:, 1].cpu().numpy()  # [b]
    return out


def rerank(sim: np.ndarray, k: int, score: Any, by_image: bool) -> np.ndarray:
    """`sim` [I, T] with each query's top-k candidates (rows: images; else columns: texts) set to 2 + their
    score(pairs) ∈ (2, 3): above every other candidate, which keeps CLIP's order."""
    out = np.asarray(sim, dtype=np.float64).copy()
    queries = out if by_image else out.T  # [Q, C]
    k = min(k, queries.shape[1])
    top = np.argsort(-queries, axis=1, kind="stable")[:, :k]  # [Q, k]
    pairs = [(q, int(c)) if by_image else (int(c), q) for q in range(len(top)) for c in top[q]]
    values = 2.0 + score(pairs)  # [Q * k]
    rows, cols = zip(*pairs)
    out[list(rows), list(cols)] = values
    return out


def rerank_recalls(sim: np.ndarray, owner: np.ndarray, k: int, score: Any) -> dict[str, float]:
    """R@1/5/10 of both directions after re-ranking, and CLIP's zero-shot recalls under ``zeroshot/``."""
    i2t = retrieval_recalls(rerank(sim, k, score, by_image=True), owner)
    t2i = retrieval_recalls(rerank(sim, k, score, by_image=False), owner)
    out = {key: v for key, v in i2t.items() if key.startswith("i2t")}
    out.update({key: v for key, v in t2i.items() if key.startswith("t2i")})
    out["rsum"] = sum(v for key, v in out.items() if "_R@" in key)
    out.update({f"zeroshot/{key}": v for key, v in retrieval_recalls(sim, owner).items()})
    out["n_images"], out["n_texts"], out["k"] = float(sim.shape[0]), float(sim.shape[1]), float(k)
    return out


__all__ = ["RerankConfig", "image_blocks", "itm_probabilities", "pad_blocks", "rerank", "rerank_recalls"]
