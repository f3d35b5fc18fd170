"""`clipvil import-views FILE.tsv --out STORE`: a released view-feature TSV → a clipvil feature store.

The TSV (R2R-EnvDrop / CLIP-ViL-VLN format, read by clipvil.data.view_tsv) holds one row per viewpoint with
its 36 view features [36, D]. The store gets one item per viewpoint: id "<scan>/<viewpoint>", a grid of 36
cells with hw (3, 12) (elevation level x heading, so cell = view index), mask all True, no pooled vector,
float32 exactly as in the file. The VLN task reads it through clipvil.families.vln.features (layout
"viewpoint" in the provenance).

The provenance names the source file (name, absolute path, size, sha256), the encoder label (default: the
file's stem, e.g. "CLIP-ViT-B-32-views"), the camera of the rows and D. Every `batch` viewpoints are one
atomic store part, so a killed import resumes where it stopped; a rerun over a finished store imports
nothing; another file (other bytes) into the same store is refused (ProvenanceMismatch).
"""

from __future__ import annotations

import hashlib
import itertools
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from clipvil.data.view_tsv import N_VIEWS, ViewRecord, iter_view_tsv
from clipvil.families.vln.features import VIEW_HW, VIEWPOINT_LAYOUT
from clipvil.features.store import (
    FeatureStore,
    GridBatch,
    has_parts,
    open_for_writing,
    remove_if_empty,
    write_part,
)


@dataclass(frozen=True)
class ImportSummary:
    """What one import did."""

    store: str
    rows: int  # viewpoints in the TSV
    imported: int  # written by this run
    skipped: int  # already in the store
    dim: int  # D
    seconds: float


def file_sha256(path: Path, chunk: int = 1 << 22) -> str:
    """sha256 of a file, streamed."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def import_provenance(tsv: Path, first: ViewRecord, encoder: str | None) -> dict[str, Any]:
    """The store provenance of features imported from `tsv` (first row: camera and width)."""
    import clipvil

    return {
        "encoder": encoder or tsv.stem, "preset": "views", "layer": "pooled", "layout": VIEWPOINT_LAYOUT,
        "dim": int(first.features.shape[1]), "dtype": "float32", "pooled": False, "hw": list(VIEW_HW),
        "camera": {"image_w": first.image_w, "image_h": first.image_h, "vfov": first.vfov},
        "source": {"tsv": tsv.name, "path": str(tsv.resolve()), "bytes": tsv.stat().st_size,
                   "sha256": file_sha256(tsv)},
        "weights_sha256": None, "versions": {"clipvil": clipvil.__version__},
    }


def _batch(records: list[ViewRecord]) -> GridBatch:
    feats = np.stack([r.features for r in records]).astype(np.float32)  # [n, 36, D]
    return GridBatch([f"{r.scan}/{r.viewpoint}" for r in records], feats,
                     np.ones(feats.shape[:2], dtype=bool), VIEW_HW, None)


def run_import_views(tsv: str | Path, out: str | Path, encoder: str | None = None, batch: int = 256) -> ImportSummary:
    """Imports every row of `tsv` not yet in the store at `out` (module docstring); returns what it did."""
    tsv, out = Path(tsv), Path(out)
    if batch < 1:
        raise ValueError(f"batch (--batch) must be at least 1, got {batch}")
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out}: exists and is not a directory (a feature store is a folder)")
    start = time.perf_counter()
    rows = iter_view_tsv(tsv, N_VIEWS)
    first = next(rows, None)
    if first is None:
        raise ValueError(f"{tsv}: no rows (an empty view-feature file)")
    root = open_for_writing(out, import_provenance(tsv, first, encoder))
    try:
        done = FeatureStore(root).stored_ids if has_parts(root) else set()
        imported = skipped = total = 0
        pending: list[ViewRecord] = []
        for record in itertools.chain([first], rows):
            total += 1
            if f"{record.scan}/{record.viewpoint}" in done:
                skipped += 1
                continue
            pending.append(record)
            if len(pending) == batch:
                write_part(root, [_batch(pending)], [])
                imported, pending = imported + len(pending), []
        if pending:
            write_part(root, [_batch(pending)], [])
            imported += len(pending)
    finally:
        remove_if_empty(root)
    if imported:
        FeatureStore(root).write_index()
    return ImportSummary(str(root), total, imported, skipped, int(first.features.shape[1]),
                         time.perf_counter() - start)


def summary_dict(summary: ImportSummary) -> dict[str, Any]:
    """The summary as JSON-able data."""
    return asdict(summary)
