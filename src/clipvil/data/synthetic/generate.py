"""make_data: a whole synthetic world on disk, images made in a process pool, files written in id order."""

from __future__ import annotations

import functools
import logging
import multiprocessing
import os
import shutil
from pathlib import Path

from tqdm import tqdm

from clipvil.data.synthetic import layout
from clipvil.data.synthetic.image import build_image
from clipvil.data.synthetic.manifest import Manifest, file_table
from clipvil.data.synthetic.spec import WorldSpec
from clipvil.data.synthetic.writer import WorldWriter

log = logging.getLogger(__name__)
_IMAGES_PER_WORKER = 150  # below this many images per extra process, a pool costs more than it saves


def _prepare(root: Path, spec: WorldSpec) -> Manifest | None:
    """The existing manifest when `root` already holds this world; None when it must be (re)made.
    Refuses a directory made with other parameters or holding files that are not ours."""
    if (root / layout.MANIFEST).exists():
        old = Manifest.load(root)
        if old.spec != spec:
            diffs = "; ".join(old.spec.differences(spec))
            raise ValueError(
                f"{root}: already holds a synthetic world made with other parameters (existing != requested: "
                f"{diffs}); pick another output directory or delete this one"
            )
        missing = old.missing()
        if not missing:
            return old
        log.warning("%s: files missing (%s ...); generating again", root, missing[0])
    if root.exists():
        foreign = sorted(p.name for p in root.iterdir() if p.name not in layout.TOP_LEVEL)
        if foreign:
            raise ValueError(
                f"{root}: not empty and not a synthetic world (has {foreign[:5]}); "
                "pick an empty or new directory"
            )
        for name in layout.TOP_LEVEL:  # leftovers of an interrupted run: ours by name, safe to replace
            target = root / name
            if target.is_dir():
                shutil.rmtree(target)
            elif target.exists():
                target.unlink()
    return None


def _worker_count(workers: int | None, n_images: int) -> int:
    if workers is not None:
        if workers < 1:
            raise ValueError(f"make_data: workers must be >= 1, got {workers}")
        return workers
    return max(1, min(os.cpu_count() or 1, n_images // _IMAGES_PER_WORKER))


def make_data(
    out_dir: str | Path,
    n_images: int,
    *,
    seed: int = 0,
    difficulty: float = 0.5,
    image_size: int | tuple[int, int] = 224,
    split_fractions: tuple[float, float, float] = (0.8, 0.1, 0.1),
    objects: tuple[int, int] = (2, 6),
    questions_per_image: int = 5,
    workers: int | None = None,
    progress: bool = True,
) -> Manifest:
    """Generate (or reuse) a synthetic world in `out_dir` and return its manifest.

    image_size is one side (square) or (width, height). objects is the (min, max) objects per image.
    Image ids run 1..n_images, train first, then val, then test. Everything is deterministic in the
    parameters (not in `workers` or `progress`): the same call writes byte-identical files. When
    `out_dir` already holds a world with the same parameters nothing is done; other parameters are
    refused with a ValueError naming the differences.
    """
    width, height = (image_size, image_size) if isinstance(image_size, int) else image_size
    spec = WorldSpec(
        n_images=n_images,
        seed=seed,
        difficulty=float(difficulty),
        width=width,
        height=height,
        split_fractions=tuple(float(f) for f in split_fractions),  # type: ignore[arg-type]
        min_objects=objects[0],
        max_objects=objects[1],
        questions_per_image=questions_per_image,
    )
    root = Path(out_dir)
    existing = _prepare(root, spec)
    if existing is not None:
        log.info("%s: synthetic world already complete, nothing to do", root)
        return existing
    root.mkdir(parents=True, exist_ok=True)
    writer = WorldWriter(root)
    job = functools.partial(build_image, spec, root=root)
    ids = range(1, n_images + 1)
    n_workers = _worker_count(workers, n_images)
    bar = tqdm(total=n_images, desc="synthetic images", unit="img", disable=not progress)
    if n_workers == 1:
        for image_id in ids:
            writer.add(job(image_id))
            bar.update()
    else:
        # fork: workers inherit the imported modules (no re-import of torch per worker); they only use
        # numpy and PIL, so forking a parent that imported torch is safe.
        methods = multiprocessing.get_all_start_methods()
        ctx = multiprocessing.get_context("fork" if "fork" in methods else None)
        with ctx.Pool(n_workers) as pool:
            for rec in pool.imap(job, ids, chunksize=16):
                writer.add(rec)
                bar.update()
    bar.close()
    counts = writer.finish()
    manifest = Manifest(root=root, spec=spec, counts=counts, files=file_table(list(counts)))
    manifest.save()
    return manifest
