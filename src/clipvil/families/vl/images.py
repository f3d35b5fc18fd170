"""Raw images for the CLIP-ViL_p tasks: decoding + the pretrain preset in the Dataset, orientation buckets,
padded batches, and per-batch random streams that do not depend on the process a batch lands on.

- `ImageLoader`: path → (normalised pixels [3, H, W], content (h, w)) with the `pretrain` preset (shorter side
  384, longer ≤ 640, zero-padded to 384×640 or 640×384) or a smaller one of the same rule (tests, CPU runs).
- `image_sizes`: (width, height) of every image from its header only, cached in a JSON file of the run
  (rank 0 writes it once, `RunContext.prepare_once`), for the landscape / portrait buckets.
- `TaggedBucketSampler`: `BucketBatchSampler` whose indices carry their epoch, ``(epoch, index)``, so a
  batch's random draws (masking, ITM partners, token sampling) are a pure function of (seed, epoch, items):
  the same under DDP as in one process, after a resume, and with DataLoader workers.
- `stack_images`: pixels of one batch into [B, 3, H, W], zero-padded top-left to the batch's largest size.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from clipvil.common.atomic import atomic_write_json
from clipvil.data.samplers import BucketBatchSampler
from clipvil.encoders import get_preset, load_image, prepare
from clipvil.engine.registry import RunContext
from clipvil.engine.task import BatchLayout

LANDSCAPE, PORTRAIT = 0, 1  # bucket ids (width >= height is landscape)
EVAL_EPOCH = -1  # the "epoch" of items fetched without a tag (evaluation): fixed draws


class ImageLoader:
    """Decodes an image and applies the pad preset of size (short, long) with the tower's mean / std."""

    def __init__(self, size: Sequence[int], mean: Sequence[float], std: Sequence[float]) -> None:
        short, long_ = int(size[0]), int(size[1])
        if not 0 < short <= long_:
            raise ValueError(f"task.image_size: need 0 < short <= long, got {list(size)}")
        self.preset = dataclasses.replace(get_preset("pretrain"), size=(short, long_), max_long=long_)
        self.mean, self.std = tuple(mean), tuple(std)

    def __call__(self, source: Any) -> tuple[torch.Tensor, tuple[int, int]]:
        """(pixels [3, H, W], real (h, w) from the top-left corner) of an image file, or of anything with a
        `read_image()` (a tar shard member). ImageDecodeError names a bad file."""
        image = source.read_image() if hasattr(source, "read_image") else load_image(source)
        prepared = prepare(image, self.preset, self.mean, self.std)
        return prepared.pixels, prepared.content_hw


def _read_sizes(paths: Sequence[Path]) -> list[list[int]]:
    sizes = []
    for p in paths:
        try:
            with Image.open(p) as img:
                sizes.append([int(img.width), int(img.height)])
        except (OSError, ValueError) as err:
            raise FileNotFoundError(f"{p}: cannot read the image header ({err})") from err
    return sizes


def image_sizes(paths: Sequence[Path], cache_dir: Path, ctx: RunContext) -> list[tuple[int, int]]:
    """(width, height) of each path, read from the image headers once by rank 0 and cached in
    `cache_dir`/image_sizes_<digest of the path list>.json (JSON {path: [w, h]}), which every rank reads."""
    unique = sorted({str(p) for p in paths})
    digest = hashlib.sha1("\n".join(unique).encode()).hexdigest()[:16]
    cache = Path(cache_dir) / f"image_sizes_{digest}.json"

    def make(target: Path) -> None:
        atomic_write_json(target, dict(zip(unique, _read_sizes([Path(p) for p in unique]))))

    ctx.prepare_once(cache, make)
    known = json.loads(cache.read_text())
    return [(int(known[str(p)][0]), int(known[str(p)][1])) for p in paths]


def orientation_buckets(sizes: Sequence[tuple[int, int]]) -> list[int]:
    """LANDSCAPE (w >= h) or PORTRAIT per (width, height): the two padded shapes of the pretrain preset."""
    return [LANDSCAPE if w >= h else PORTRAIT for w, h in sizes]


class TaggedBucketSampler(BucketBatchSampler):
    """A BucketBatchSampler yielding ``(epoch, index)`` pairs (see the module docstring)."""

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:  # type: ignore[override]
        epoch = self.epoch
        for batch in super().__iter__():
            yield [(epoch, i) for i in batch]


def tagged_sampler(buckets: list[int], layout: BatchLayout) -> TaggedBucketSampler:
    """The training sampler of a task: orientation buckets, the engine's batch layout."""
    return TaggedBucketSampler(buckets, layout.batch_size, layout.grad_accum, layout.rank, layout.world_size,
                               layout.seed, layout.shuffle)


def untag(key: int | tuple[int, int]) -> tuple[int, int]:
    """(epoch, index) of a dataset key: a tagged pair, or a plain index (evaluation: EVAL_EPOCH)."""
    if isinstance(key, tuple):
        return int(key[0]), int(key[1])
    return EVAL_EPOCH, int(key)


def batch_rng(seed: int, items: Sequence[dict[str, Any]]) -> np.random.Generator:
    """A numpy generator seeded by (seed, epoch, the items' indices): the batch's own random stream."""
    keys = [seed, items[0]["epoch"] + 1, *[int(it["index"]) for it in items]]
    return np.random.default_rng(np.random.SeedSequence(keys))


def stack_images(pixels: Sequence[torch.Tensor]) -> torch.Tensor:
    """[3, h_i, w_i] tensors → [B, 3, H, W] (H, W = the largest), each zero-padded at the bottom / right."""
    h = max(p.shape[1] for p in pixels)
    w = max(p.shape[2] for p in pixels)
    out = torch.zeros(len(pixels), 3, h, w, dtype=pixels[0].dtype)  # [B, 3, H, W]
    for i, p in enumerate(pixels):
        out[i, :, : p.shape[1], : p.shape[2]] = p
    return out


__all__ = [
    "EVAL_EPOCH",
    "LANDSCAPE",
    "PORTRAIT",
    "ImageLoader",
    "TaggedBucketSampler",
    "batch_rng",
    "image_sizes",
    "orientation_buckets",
    "stack_images",
    "tagged_sampler",
    "untag",
]
