"""make_corpus: the pre-training corpus ("the web") as WebDataset tar shards, resumable shard by shard.

    <out>/corpus.json               the spec, the class list, the held-out pairs, shard patterns and counts
    <out>/train/web-000000.tar      samples <key>.jpg + <key>.txt (the caption) + <key>.cls (the class index,
    <out>/train/web-000000.tar.json   webdataset's convention) + <key>.json (the scene); the sidecar records
    <out>/val/web-000000.tar          the shard's samples and sha256 and is written after the shard

Image ids run 1..n_images (train first, then the val images); shard k of a split holds `shard_size` consecutive
ids. Every shard is a pure function of (spec, shard): bytes are identical on every run (tar members carry
mtime 0), written to a temporary file and renamed, then its sidecar. A rerun skips shards whose sidecar
matches the file and rebuilds the others, so a kill loses at most the shards in flight; a directory made with
another spec is refused. `corpus.json` is written last: its presence means the corpus is complete.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import multiprocessing
import os
import tarfile
import time
from collections import Counter
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from tqdm import tqdm

from clipvil.common.atomic import atomic_write, atomic_write_json
from clipvil.data.synthetic.corpus_captions import corpus_caption
from clipvil.data.synthetic.corpus_render import render_corpus
from clipvil.data.synthetic.corpus_scene import CORPUS_SHAPES, HELD_OUT, sample_corpus_scene
from clipvil.data.synthetic.scene import stream

CORPUS_VERSION = 1  # bump when a change to the generator changes any byte of its output
MANIFEST = "corpus.json"
CLASSES: tuple[str, ...] = CORPUS_SHAPES  # the category label: shape of the largest object
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CorpusSpec:
    """Everything that decides the corpus's bytes (validated on construction)."""

    n_images: int  # train + val images, 100..10_000_000
    val_images: int = 1000  # the last ids form the val split
    seed: int = 1000  # master seed (downstream worlds use small seeds; the streams differ anyway)
    size: int = 160  # image side in pixels
    shard_size: int = 1000  # samples per shard
    version: int = CORPUS_VERSION

    def __post_init__(self) -> None:
        problems = []
        if not 100 <= self.n_images <= 10_000_000:
            problems.append(f"--images must be in 100..10000000, got {self.n_images}")
        if not 1 <= self.val_images < self.n_images:
            problems.append(f"--val-images must be in 1..{self.n_images - 1}, got {self.val_images}")
        if not 64 <= self.size <= 1024:
            problems.append(f"--size must be 64..1024 pixels, got {self.size}")
        if not 10 <= self.shard_size <= 100_000:
            problems.append(f"--shard-size must be 10..100000, got {self.shard_size}")
        if problems:
            raise ValueError("make-corpus: " + "; ".join(problems))

    def split_ids(self, split: str) -> range:
        n_train = self.n_images - self.val_images
        return range(1, n_train + 1) if split == "train" else range(n_train + 1, self.n_images + 1)

    def shards(self, split: str) -> list[range]:
        ids = self.split_ids(split)
        return [ids[k:k + self.shard_size] for k in range(0, len(ids), self.shard_size)]

    def pattern(self, split: str) -> str:
        """The brace pattern of a split's shards, relative to the corpus folder (task.data.splits takes it)."""
        n = len(self.shards(split))
        return f"{split}/web-000000.tar" if n == 1 else f"{split}/web-{{000000..{n - 1:06d}}}.tar"


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = len(data), 0, 0o644
    tar.addfile(info, io.BytesIO(data))


def build_sample(spec: CorpusSpec, image_id: int) -> tuple[bytes, str, int, dict[str, Any]]:
    """(JPEG bytes, caption, class index, scene record) of one corpus image."""
    scene = sample_corpus_scene(spec.seed, image_id, spec.size, spec.size)
    rng = stream(spec.seed, image_id, "crender")
    image = render_corpus(scene, rng)
    buf = io.BytesIO()
    image.save(buf, "JPEG", quality=int(rng.integers(70, 96)))
    style, caption = corpus_caption(scene, stream(spec.seed, image_id, "ccaption"))
    record = {**scene.to_json(), "style": style}
    return buf.getvalue(), caption, CLASSES.index(scene.category), record


def _write_shard(spec: CorpusSpec, path: Path, ids: range) -> dict[str, Any]:
    styles: Counter[str] = Counter()

    def write(tmp: Path) -> None:
        with tarfile.open(tmp, "w", format=tarfile.USTAR_FORMAT) as tar:
            for image_id in ids:
                jpeg, caption, label, record = build_sample(spec, image_id)
                key = f"{image_id:08d}"
                styles[record["style"]] += 1
                _add(tar, f"{key}.jpg", jpeg)
                _add(tar, f"{key}.txt", caption.encode("utf-8"))
                _add(tar, f"{key}.cls", str(label).encode("ascii"))
                _add(tar, f"{key}.json", json.dumps(record, sort_keys=True).encode("utf-8"))

    atomic_write(path, write)
    info = {"samples": len(ids), "first_id": ids[0], "sha256": _sha256(path), "styles": dict(styles)}
    atomic_write_json(_sidecar(path), info, indent=1)
    return info


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _sidecar(path: Path) -> Path:
    return path.with_name(path.name + ".json")


def _finished(path: Path, ids: range) -> dict[str, Any] | None:
    """The sidecar of a complete shard (its file present, same size of content), else None."""
    side = _sidecar(path)
    if not (path.is_file() and side.is_file()):
        return None
    try:
        info = json.loads(side.read_text())
    except (OSError, ValueError):
        return None
    if info.get("samples") != len(ids) or info.get("first_id") != ids[0] or info.get("sha256") != _sha256(path):
        return None
    return info


def _job(args: tuple[CorpusSpec, str, int, Path]) -> tuple[str, int, dict[str, Any], bool]:
    spec, split, k, root = args
    ids = spec.shards(split)[k]
    path = root / split / f"web-{k:06d}.tar"
    done = _finished(path, ids)
    if done is not None:
        return split, k, done, False
    return split, k, _write_shard(spec, path, ids), True


def _check_existing(root: Path, spec: CorpusSpec) -> dict[str, Any] | None:
    manifest = root / MANIFEST
    if manifest.is_file():
        try:
            old = json.loads(manifest.read_text())
            old_spec = CorpusSpec(**{f.name: old["spec"][f.name] for f in fields(CorpusSpec) if f.name in old["spec"]})
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise ValueError(f"{manifest}: not a clipvil corpus manifest ({err}); pick another --out") from None
        if old_spec != spec:
            diffs = [f"{f.name}: {getattr(old_spec, f.name)!r} != {getattr(spec, f.name)!r}" for f in fields(spec)
                     if getattr(old_spec, f.name) != getattr(spec, f.name)]
            raise ValueError(f"{root}: already holds a corpus made with other parameters (existing != requested: "
                             f"{'; '.join(diffs)}); pick another --out or delete it")
        return old
    if root.exists():
        foreign = sorted(p.name for p in root.iterdir() if p.name not in ("train", "val", MANIFEST))
        if foreign:
            raise ValueError(f"{root}: not empty and not a clipvil corpus (has {foreign[:5]}); pick another --out")
    return None


def make_corpus(out: str | Path, spec: CorpusSpec, *, workers: int | None = None,
                progress: bool = True) -> dict[str, Any]:
    """Write (or finish, or reuse) the corpus in `out`; returns the manifest."""
    root = Path(out)
    existing = _check_existing(root, spec)
    jobs = [(spec, split, k, root) for split in ("train", "val") for k in range(len(spec.shards(split)))]
    if existing is not None and all(_finished(root / s / f"web-{k:06d}.tar", spec.shards(s)[k])
                                    for _, s, k, _ in jobs):
        return existing
    t0 = time.perf_counter()
    n_workers = max(1, min(workers or os.cpu_count() or 1, len(jobs)))
    infos: dict[tuple[str, int], dict[str, Any]] = {}
    built = 0
    bar = tqdm(total=len(jobs), desc="corpus shards", unit="shard", disable=not progress)
    if n_workers == 1:
        results = map(_job, jobs)
    else:
        ctx = multiprocessing.get_context("fork" if "fork" in multiprocessing.get_all_start_methods() else None)
        pool = ctx.Pool(n_workers)
        results = pool.imap_unordered(_job, jobs)
    for split, k, info, fresh in results:
        infos[(split, k)] = info
        built += fresh
        bar.update()
    bar.close()
    if n_workers > 1:
        pool.close()
        pool.join()
    styles: Counter[str] = Counter()
    for info in infos.values():
        styles.update(info["styles"])
    manifest = {
        "spec": asdict(spec),
        "splits": {s: {"pattern": spec.pattern(s), "images": len(spec.split_ids(s)), "shards": len(spec.shards(s))}
                   for s in ("train", "val")},
        "classes": list(CLASSES),
        "class_rule": "the shape of the largest object (single label, as ImageNet: no colour, count or relation)",
        "held_out": sorted([list(p) for p in HELD_OUT]),
        "caption_styles": dict(sorted(styles.items())),
        "shards_sha256": {f"{s}/web-{k:06d}.tar": infos[(s, k)]["sha256"] for s, k in sorted(infos)},
        "seconds_last_run": round(time.perf_counter() - t0, 1),
        "shards_built_last_run": built,
    }
    atomic_write_json(root / MANIFEST, manifest, indent=1)
    return manifest


__all__ = ["CLASSES", "CORPUS_VERSION", "MANIFEST", "CorpusSpec", "build_sample", "make_corpus"]
