"""`clipvil extract`: images → grid features in a feature store, batched, resumable, several processes.

Images are decoded and preprocessed in DataLoader workers; the tower runs on batches; each finished batch
becomes one atomic part of the store. A rerun skips every image already stored (or recorded as failed), so a
job killed at any moment resumes without redoing or corrupting finished work. Under ``torchrun`` each rank
takes every WORLD_SIZE-th batch of the pending images and writes its own parts (no process group needed).
"""

from __future__ import annotations

import logging
import os
import time
from collections import defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from clipvil.encoders.images import ImageDecodeError, load_image
from clipvil.encoders.preprocess import Preset, get_preset, output_size, prepare
from clipvil.encoders.protocol import Encoder
from clipvil.encoders.registry import build_encoder
from clipvil.encoders.store import FeatureStore, GridBatch, open_for_writing, write_part
from clipvil.types import GridFeatures

log = logging.getLogger(__name__)
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
STORE_DTYPES = {"float16": np.float16, "float32": np.float32}


@dataclass(frozen=True)
class ImageEntry:
    """An image to extract: its id in the store and its file."""

    id: str
    path: Path


@dataclass
class ExtractConfig:
    """What `clipvil extract` does."""

    encoder: str  # registered encoder name (RN50, ViT-B-32, imagenet-rn50, ...)
    images: Path  # a directory (searched recursively) or a list file (one path, or "id<TAB>path", per line)
    out: Path  # the feature store directory
    preset: str = "vqa"  # input preset (vqa, caption, pretrain, views, native)
    weights: Path | None = None  # local weight file; None = random weights (stated in the provenance)
    batch_size: int = 16  # images per store part (one atomic write)
    forward_batch: int = 0  # images per forward pass (0 = auto: 2 on a CPU, where big conv batches fall out
    # of cache and run slower — measured in benchmarks/extract.py —, the whole part on a GPU)
    workers: int = -1  # DataLoader decoding processes (0 = in the main process; -1 = auto, see auto_workers)
    dtype: str = "float16"  # stored dtype: float16 or float32
    pooled: bool = False  # also store the pooled (CLIP joint-space) embedding
    block: int = -1  # ViT only: which block's tokens (-1 last, -2 penultimate)
    strict: bool = False  # stop at the first bad image instead of recording it and going on
    device: str = "auto"  # auto, cpu, cuda, cuda:1 ...
    progress: bool = True  # show a progress bar


@dataclass
class ExtractSummary:
    """What one run (one rank) did."""

    store: str
    total: int  # images in the input
    skipped: int  # already finished before this run
    extracted: int  # written by this rank in this run
    failed: int  # bad images recorded by this rank in this run
    seconds: float
    images_per_s: float
    rank: int
    world_size: int


def list_images(source: Path) -> list[ImageEntry]:
    """Images of a directory (recursive; id = relative path without suffix) or of a list file, sorted by id."""
    source = Path(source)
    if source.is_dir():
        files = sorted(p for p in source.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        entries = [ImageEntry(p.relative_to(source).with_suffix("").as_posix(), p) for p in files]
    elif source.is_file():
        entries = []
        for n, line in enumerate(source.read_text().splitlines(), start=1):
            if not line.strip() or line.startswith("#"):
                continue
            image_id, _, path = line.partition("\t") if "\t" in line else (None, "", line.strip())
            p = Path(path.strip())
            p = p if p.is_absolute() else source.parent / p
            entries.append(ImageEntry(image_id.strip() if image_id else p.stem, p))
    else:
        raise FileNotFoundError(f"{source}: no such image directory or list file")
    seen: dict[str, Path] = {}
    for e in entries:
        if e.id in seen:
            raise ValueError(f"{source}: image id {e.id!r} appears twice ({seen[e.id]} and {e.path})")
        seen[e.id] = e.path
    return sorted(entries, key=lambda e: e.id)


class PreparedImages(Dataset):
    """Decodes and preprocesses one image per item; a bad image yields an item with `error` set."""

    def __init__(self, entries: list[ImageEntry], preset: Preset, encoder: Encoder) -> None:
        self.entries, self.preset = entries, preset
        self.mean, self.std, self.native = encoder.mean, encoder.std, encoder.native_size

    def __len__(self) -> int:
        return len(self.entries)

    def __getitem__(self, i: int) -> dict[str, Any]:
        e = self.entries[i]
        try:
            p = prepare(load_image(e.path), self.preset, self.mean, self.std, self.native)
        except ImageDecodeError as err:
            return {"id": e.id, "path": str(e.path), "error": str(err)}
        return {"id": e.id, "path": str(e.path), "pixels": p.pixels, "content_hw": p.content_hw, "error": None}


def provenance(cfg: ExtractConfig, encoder: Encoder) -> dict[str, Any]:
    """What made the features; a store refuses features of another provenance."""
    import open_clip
    import timm

    import clipvil

    preset = get_preset(cfg.preset)
    info = encoder.weights_info  # type: ignore[attr-defined]
    size = "x".join(map(str, output_size(preset, (1, 2), encoder.native_size)))
    return {
        "encoder": encoder.name, "weights_sha256": info.sha256, "weights_format": info.format,
        "preset": preset.name, "input_size": size if preset.mode != "pad" else f"{size} (or transposed), padded",
        "layer": encoder.layer, "block": cfg.block,
        "stride": encoder.stride, "dim": encoder.dim, "dtype": cfg.dtype,
        "pooled": cfg.pooled,
        "versions": {"clipvil": clipvil.__version__, "torch": torch.__version__,
                     "open_clip": open_clip.__version__, "timm": timm.__version__},
    }


def auto_workers(device: torch.device) -> int:
    """Decoding processes: on a CPU with few cores a decoding process steals a core from the tower (whose
    threads then wait on each other), and decoding costs ~2% of a CPU forward pass, so decode inline there;
    on a GPU, decode in parallel."""
    cores = os.cpu_count() or 1
    if device.type == "cpu":
        return 0 if cores <= 4 else min(4, cores // 8)
    return min(8, max(1, cores // 2))


def _pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def _forward(encoder: Encoder, group: list[dict[str, Any]], device: torch.device, pooled: bool) -> GridFeatures:
    pixels = torch.stack([g["pixels"] for g in group]).to(device, non_blocking=True)  # [B, 3, H, W]
    with torch.autocast(device.type, dtype=torch.float16, enabled=device.type == "cuda"):
        return encoder(pixels, [g["content_hw"] for g in group], pooled=pooled)


@torch.inference_mode()
def _encode(encoder: Encoder, items: list[dict[str, Any]], device: torch.device, cfg: ExtractConfig) -> list[GridBatch]:
    """Runs the tower on each same-shape group of a batch (in forward_batch chunks); host arrays in the store dtype."""
    by_shape: dict[tuple[int, ...], list[dict[str, Any]]] = defaultdict(list)
    for it in items:
        by_shape[tuple(it["pixels"].shape)].append(it)
    out, np_dtype = [], STORE_DTYPES[cfg.dtype]
    step = cfg.forward_batch or (2 if device.type == "cpu" else cfg.batch_size)
    for group in by_shape.values():
        grids = [_forward(encoder, group[i:i + step], device, cfg.pooled) for i in range(0, len(group), step)]
        feats = torch.cat([g.feats.float().cpu() for g in grids]).numpy().astype(np_dtype)  # [n, N, C]
        mask = torch.cat([g.mask.cpu() for g in grids]).numpy()  # [n, N]
        pooled = None
        if cfg.pooled:
            pooled = torch.cat([g.pooled.float().cpu() for g in grids]).numpy().astype(np_dtype)  # [n, D]
        out.append(GridBatch([g["id"] for g in group], feats, mask, grids[0].hw, pooled))
    return out


def _join_group(world: int) -> bool:
    """Joins torchrun's process group (gloo: only barriers are needed) when there are several ranks."""
    if world <= 1 or not torch.distributed.is_available():
        return False
    if not torch.distributed.is_initialized():
        torch.distributed.init_process_group("gloo")
    return True


def run_extract(cfg: ExtractConfig) -> ExtractSummary:
    """Extracts every pending image of `cfg.images` into `cfg.out`; see the module docstring."""
    if cfg.dtype not in STORE_DTYPES:
        raise ValueError(f"dtype must be one of {sorted(STORE_DTYPES)}, got {cfg.dtype!r}")
    rank, world = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    device = _pick_device(cfg.device)
    if device.type == "cuda" and world > 1:
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    encoder = build_encoder(cfg.encoder, cfg.weights, trainable=False, block=cfg.block)
    encoder = encoder.to(device)  # type: ignore[attr-defined]
    dist = _join_group(world)
    root = open_for_writing(cfg.out, provenance(cfg, encoder), rank)
    entries = list_images(cfg.images)
    finished = FeatureStore(root).finished_ids
    if dist:  # every rank must split the same pending list: nobody writes before all have looked
        torch.distributed.barrier()
    pending = [e for e in entries if e.id not in finished]
    batches = [list(range(i, min(i + cfg.batch_size, len(pending)))) for i in range(0, len(pending), cfg.batch_size)]
    mine = batches[rank::world]
    workers = auto_workers(device) if cfg.workers < 0 else cfg.workers
    loader = DataLoader(PreparedImages(pending, get_preset(cfg.preset), encoder), batch_sampler=mine,
                        num_workers=workers, collate_fn=list, prefetch_factor=4 if workers else None)
    bar = tqdm(total=sum(map(len, mine)), unit="img", desc=f"extract {encoder.name} [rank {rank}]",
               disable=not cfg.progress, dynamic_ncols=True)
    extracted = failed = 0
    start = time.perf_counter()
    for items in loader:
        bad = [{"id": it["id"], "path": it["path"], "reason": it["error"]} for it in items if it["error"]]
        if bad and cfg.strict:
            raise ImageDecodeError(f"{bad[0]['reason']} (--strict: stopping; finished batches are kept)")
        good = [it for it in items if it["error"] is None]
        write_part(root, _encode(encoder, good, device, cfg) if good else [], bad, rank)
        extracted, failed = extracted + len(good), failed + len(bad)
        bar.update(len(items))
        bar.set_postfix(failed=failed)
    bar.close()
    seconds = time.perf_counter() - start
    if dist:
        torch.distributed.barrier()
    if rank == 0:
        FeatureStore(root).write_errors_file()
    if dist:
        torch.distributed.destroy_process_group()
    return ExtractSummary(str(root), len(entries), len(entries) - len(pending), extracted, failed, seconds,
                          extracted / seconds if seconds > 0 else 0.0, rank, world)


def summary_dict(summary: ExtractSummary) -> dict[str, Any]:
    """The summary as a JSON-able dict."""
    return asdict(summary)
