"""`clipvil extract`: images → grid features in a feature store, batched, resumable, several processes.

Images are decoded and preprocessed in DataLoader workers; the tower runs on batches; each finished batch
becomes one atomic part of the store. A rerun skips every image already stored, so a job killed at any moment
resumes without redoing or corrupting finished work; images that failed are not finished work: a rerun retries
them (after the file is fixed they are stored, and errors.jsonl holds only what still fails). Under ``torchrun``
each rank takes every WORLD_SIZE-th batch of the pending images and writes its own parts; when all are done,
rank 0 writes the store's consolidated index and errors file (no rank reads a half-written one: both are
renamed into place).

A start that fails (bad settings, an unknown encoder, a bad weight file, no images) leaves no store behind.
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

from clipvil.common.distributed import pick_device
from clipvil.encoders.images import DEFAULT_MAX_PIXELS, ImageDecodeError, load_image
from clipvil.encoders.preprocess import Preset, get_preset, output_size, prepare
from clipvil.encoders.protocol import Encoder
from clipvil.encoders.registry import build_encoder
from clipvil.encoders.shipped import resolve_weights
from clipvil.features.store import (
    PROVENANCE_FILE,
    FeatureStore,
    GridBatch,
    open_for_writing,
    remove_if_empty,
    write_part,
)
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

    encoder: str  # registered encoder name (RN50, ViT-B-32, ViT-B-32-quickgelu, imagenet-rn50, ...)
    images: Path  # a directory (searched recursively) or a list file (one path, or "id<TAB>path", per line)
    out: Path  # the feature store directory
    preset: str = "vqa"  # input preset (vqa, caption, pretrain, views, native)
    resize: str | None = None  # fixed-size presets: official | direct-bicubic (None: the preset's own; vqa: official)
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
    max_pixels: int = DEFAULT_MAX_PIXELS  # larger images (width x height) are recorded as failed, not decoded

    def __post_init__(self) -> None:
        """Checks the settings; each ValueError names the field and its command-line option."""
        self.images, self.out = Path(self.images), Path(self.out)
        self.weights = Path(resolve_weights(self.weights)) if self.weights is not None else None  # type: ignore[arg-type]
        checks = [
            (self.batch_size >= 1, "batch_size (--batch-size) must be at least 1", self.batch_size),
            (self.forward_batch >= 0, "forward_batch (--forward-batch) must be 0 (auto) or positive",
             self.forward_batch),
            (self.workers >= -1, "workers (--workers) must be -1 (auto), 0 (inline) or positive", self.workers),
            (self.max_pixels >= 1, "max_pixels (--max-pixels) must be positive", self.max_pixels),
            (self.dtype in STORE_DTYPES, f"dtype (--dtype) must be one of {sorted(STORE_DTYPES)}", self.dtype),
        ]
        for ok, message, value in checks:
            if not ok:
                raise ValueError(f"{message}, got {value!r}")
        get_preset(self.preset, self.resize)  # unknown preset / resize mode: a ValueError naming it
        if self.out.exists() and not self.out.is_dir():
            raise ValueError(f"out (--out) {self.out}: exists and is not a directory (a feature store is a folder)")


@dataclass
class ExtractSummary:
    """What one run (one rank) did."""

    store: str
    total: int  # images in the input
    skipped: int  # already stored before this run
    retried: int  # images that had failed before and were tried again in this run (all ranks)
    extracted: int  # written by this rank in this run
    failed: int  # bad images recorded by this rank in this run
    failures_remaining: int  # images of the store that still fail after this run (the lines of errors.jsonl)
    seconds: float
    images_per_s: float
    rank: int
    world_size: int


def list_images(source: Path) -> list[ImageEntry]:
    """Images of a directory (recursive; id = relative path without suffix) or of a list file, sorted by id."""
    source = Path(source)
    if source.is_dir():  # dangling symbolic links are kept: they fail visibly, with the reason recorded
        files = sorted(p for p in source.rglob("*")
                       if p.suffix.lower() in IMAGE_SUFFIXES and (p.is_file() or p.is_symlink() and not p.exists()))
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
        raise FileNotFoundError(f"images (--images) {source}: no such image directory or list file")
    if not entries:
        what = f"no image files ({', '.join(sorted(IMAGE_SUFFIXES))}) in the folder or below" if source.is_dir() \
            else "the list file names no image"
        raise ValueError(f"images (--images) {source}: {what}")
    seen: dict[str, Path] = {}
    for e in entries:
        if e.id in seen:
            raise ValueError(f"{source}: image id {e.id!r} appears twice ({seen[e.id]} and {e.path})")
        seen[e.id] = e.path
    return sorted(entries, key=lambda e: e.id)


class PreparedImages(Dataset):
    """Decodes and preprocesses one image per item; a bad image yields an item with `error` set."""

    def __init__(self, entries: list[ImageEntry], preset: Preset, encoder: Encoder, max_pixels: int) -> None:
        self.entries, self.preset, self.max_pixels = entries, preset, max_pixels
        self.mean, self.std, self.native = encoder.mean, encoder.std, encoder.native_size

    def __len__(self) -> int:
        return len(self.entries)

    def __getitem__(self, i: int) -> dict[str, Any]:
        e = self.entries[i]
        try:
            p = prepare(load_image(e.path, self.max_pixels), self.preset, self.mean, self.std, self.native)
        except ImageDecodeError as err:
            return {"id": e.id, "path": str(e.path), "error": str(err)}
        return {"id": e.id, "path": str(e.path), "pixels": p.pixels, "content_hw": p.content_hw, "error": None}


def provenance(cfg: ExtractConfig, encoder: Encoder) -> dict[str, Any]:
    """What made the features; a store refuses features of another provenance."""
    import open_clip
    import timm

    import clipvil

    preset = get_preset(cfg.preset, cfg.resize)
    info = encoder.weights_info
    size = "x".join(map(str, output_size(preset, (1, 2), encoder.native_size)))
    act = encoder.activation
    return {
        "encoder": encoder.name, "weights_sha256": info.sha256, "weights_format": info.format,
        "preset": preset.name, "resize": preset.resize if preset.mode == "resize" else None,
        "input_size": size if preset.mode != "pad" else f"{size} (or transposed), padded",
        "layer": encoder.layer, "block": cfg.block, "block_index": getattr(encoder, "block", None),
        "activation": act.name if act else None, "activation_source": act.source if act else None,
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
    """`auto` / `cpu` / `cuda` through the one device set-up (clipvil.common.distributed); `cuda:N` as given."""
    if name in ("auto", "cpu", "cuda"):
        return pick_device(name)
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


def _finish(root: Path, rank: int, dist: bool) -> int:
    """After every rank is done: rank 0 writes the index and errors.jsonl; returns the failures left."""
    if dist:
        torch.distributed.barrier()
    store = FeatureStore(root) if rank == 0 else None
    if store is not None:
        store.write_index()
        store.write_errors_file()
    if dist:  # the others read the index only once it is complete
        torch.distributed.barrier()
    remaining = len((store or FeatureStore(root)).failures)
    if dist:
        torch.distributed.destroy_process_group()
    return remaining


def _start(cfg: ExtractConfig, rank: int, world: int) -> tuple[Encoder, torch.device, list[ImageEntry], bool]:
    """Everything that can fail on bad settings, before the store is touched."""
    entries = list_images(cfg.images)
    device = _pick_device(cfg.device)
    if device.type == "cuda" and world > 1:
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    encoder = build_encoder(cfg.encoder, cfg.weights, trainable=False, block=cfg.block)
    encoder = encoder.to(device)
    return encoder, device, entries, _join_group(world)


def run_extract(cfg: ExtractConfig) -> ExtractSummary:
    """Extracts every pending image of `cfg.images` into `cfg.out`; see the module docstring."""
    rank, world = int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))
    encoder, device, entries, dist = _start(cfg, rank, world)
    fresh = not (Path(cfg.out) / PROVENANCE_FILE).exists()
    root = open_for_writing(cfg.out, provenance(cfg, encoder), rank)
    try:
        return _extract(cfg, root, encoder, device, entries, dist, rank, world)
    except BaseException:
        if fresh and rank == 0 and remove_if_empty(root):
            log.info("%s: removed the empty store of this failed run", root)
        raise


def _extract(
    cfg: ExtractConfig, root: Path, encoder: Encoder, device: torch.device, entries: list[ImageEntry], dist: bool,
    rank: int, world: int,
) -> ExtractSummary:
    store = FeatureStore(root)
    done, failed_before = store.stored_ids, store.failed_ids
    if dist:  # every rank must split the same pending list: nobody writes before all have looked
        torch.distributed.barrier()
    pending = [e for e in entries if e.id not in done]
    retried = sum(1 for e in pending if e.id in failed_before)
    if retried and rank == 0:
        log.info("retrying %d image(s) that failed before", retried)
    batches = [list(range(i, min(i + cfg.batch_size, len(pending)))) for i in range(0, len(pending), cfg.batch_size)]
    mine = batches[rank::world]
    workers = auto_workers(device) if cfg.workers < 0 else cfg.workers
    dataset = PreparedImages(pending, get_preset(cfg.preset, cfg.resize), encoder, cfg.max_pixels)
    loader = DataLoader(dataset, batch_sampler=mine, num_workers=workers, collate_fn=list,
                        prefetch_factor=4 if workers else None)
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
    remaining = _finish(root, rank, dist)
    if remaining and rank == 0:
        log.info("%d image(s) still fail; see %s", remaining, root / "errors.jsonl")
    return ExtractSummary(str(root), len(entries), len(entries) - len(pending), retried, extracted, failed,
                          remaining, seconds, extracted / seconds if seconds > 0 else 0.0, rank, world)


def summary_dict(summary: ExtractSummary) -> dict[str, Any]:
    """The summary as a JSON-able dict."""
    return asdict(summary)
