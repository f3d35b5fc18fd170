"""The feature store: grid features in HDF5, written in atomic parts, read as one store by image id.

Layout of a store directory::

    STORE/provenance.json        what made the features (encoder, weights sha256, preset, layer, dtype, versions)
    STORE/parts/part-<hash>.h5   one finished batch each; written to a temp name then renamed into place
    STORE/errors.jsonl           images that failed (id, path, reason), regenerated from the parts

Every part is complete or absent: a job killed at any moment (even ``kill -9``) leaves at most a temp file,
which readers never look at and the next run deletes. Several processes (``torchrun``) write parts side by
side; the reader takes every part of the directory as one store. Inside a part, images of one grid shape are
stacked: ``g<k>/ids`` [n], ``g<k>/feats`` [n, N, C], ``g<k>/mask`` [n, N], ``g<k>/pooled`` [n, D] (optional),
with the grid (h, w) as the group's attribute ``hw``; failed images are in the part's ``failed`` JSON attribute.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch

from clipvil.types import GridFeatures

PROVENANCE_FILE = "provenance.json"
PARTS_DIR = "parts"
ERRORS_FILE = "errors.jsonl"


class ProvenanceMismatch(ValueError):
    """The store holds features made differently from the ones about to be added."""


@dataclass(frozen=True)
class StoredGrid:
    """One image's features as stored."""

    feats: np.ndarray  # [N, C]
    mask: np.ndarray  # [N] bool
    hw: tuple[int, int]
    pooled: np.ndarray | None  # [D] or None


@dataclass(frozen=True)
class GridBatch:
    """Features of one grid shape from one batch, ready to be written."""

    ids: list[str]
    feats: np.ndarray  # [n, N, C]
    mask: np.ndarray  # [n, N] bool
    hw: tuple[int, int]
    pooled: np.ndarray | None  # [n, D] or None


def _write_json_atomic(path: Path, payload: Any, *, lines: bool = False) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    text = "".join(json.dumps(x) + "\n" for x in payload) if lines else json.dumps(payload, indent=2) + "\n"
    tmp.write_text(text)
    os.replace(tmp, path)


def open_for_writing(root: str | Path, provenance: dict[str, Any], rank: int = 0) -> Path:
    """Creates the store (or checks that an existing one has the same provenance) and clears this rank's
    leftover temp files; returns the store's root path."""
    root = Path(root)
    (root / PARTS_DIR).mkdir(parents=True, exist_ok=True)
    prov_path = root / PROVENANCE_FILE
    tmp = root / f".{PROVENANCE_FILE}.tmp-r{rank}-{os.getpid()}"
    tmp.write_text(json.dumps(provenance, indent=2) + "\n")
    try:  # link is atomic and exclusive: of several ranks starting together one publishes a complete file
        os.link(tmp, prov_path)
    except FileExistsError:
        existing = json.loads(prov_path.read_text())
        diff = {k: (existing.get(k), provenance.get(k)) for k in sorted(set(existing) | set(provenance))
                if existing.get(k) != provenance.get(k)}
        if diff:
            lines = "; ".join(f"{k}: store has {a!r}, this run has {b!r}" for k, (a, b) in diff.items())
            raise ProvenanceMismatch(
                f"{prov_path}: refusing to add features made differently ({lines}). Use another --out.")
    finally:
        tmp.unlink()
    for leftover in (root / PARTS_DIR).glob(f".part-*.tmp-r{rank}-*"):
        leftover.unlink()
    return root


def write_part(root: Path, groups: Sequence[GridBatch], failed: Sequence[dict[str, str]], rank: int = 0) -> Path:
    """Writes one finished batch atomically (temp file, fsync, rename); returns the part's path."""
    ids = [i for g in groups for i in g.ids] + [f["id"] for f in failed]
    name = hashlib.sha1("\n".join(ids).encode()).hexdigest()[:20]
    final = root / PARTS_DIR / f"part-{name}.h5"
    tmp = root / PARTS_DIR / f".part-{name}.tmp-r{rank}-{os.getpid()}"
    with h5py.File(tmp, "w") as fh:
        fh.attrs["failed"] = json.dumps(list(failed))
        for k, g in enumerate(groups):
            grp = fh.create_group(f"g{k}")
            grp.attrs["hw"] = np.asarray(g.hw, dtype=np.int64)
            grp.create_dataset("ids", data=np.asarray(g.ids, dtype=object), dtype=h5py.string_dtype())
            grp.create_dataset("feats", data=g.feats)
            grp.create_dataset("mask", data=g.mask.astype(bool))
            if g.pooled is not None:
                grp.create_dataset("pooled", data=g.pooled)
    with open(tmp, "rb") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, final)
    return final


class FeatureStore:
    """Reads a store (all its parts) by image id. Safe to use from DataLoader workers (opens files per process)."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        prov = self.root / PROVENANCE_FILE
        if not prov.is_file():
            raise FileNotFoundError(f"{self.root}: not a feature store (no {PROVENANCE_FILE})")
        self.provenance: dict[str, Any] = json.loads(prov.read_text())
        self.parts: list[Path] = sorted((self.root / PARTS_DIR).glob("part-*.h5"))
        self._index: dict[str, tuple[int, str, int]] = {}
        self.failures: list[dict[str, str]] = []
        for p, part in enumerate(self.parts):
            with h5py.File(part, "r") as fh:
                self.failures.extend(json.loads(fh.attrs.get("failed", "[]")))
                for gname, grp in fh.items():
                    for row, image_id in enumerate(grp["ids"].asstr()[()]):
                        self._index[str(image_id)] = (p, gname, row)
        self._handles: dict[int, h5py.File] = {}
        self._pid = os.getpid()
        self._cache: dict[str, StoredGrid] | None = None

    def preload(self) -> FeatureStore:
        """Reads every part into memory once (fast random access for training on cached grids)."""
        cache: dict[str, StoredGrid] = {}
        for part in self.parts:
            with h5py.File(part, "r") as fh:
                for grp in fh.values():
                    ids, feats, mask = grp["ids"].asstr()[()], grp["feats"][()], grp["mask"][()]
                    pooled = grp["pooled"][()] if "pooled" in grp else None
                    hw = tuple(int(x) for x in grp.attrs["hw"])
                    for row, image_id in enumerate(ids):
                        cache[str(image_id)] = StoredGrid(feats[row], mask[row], hw,
                                                          None if pooled is None else pooled[row])
        self._cache = cache
        return self

    @property
    def ids(self) -> list[str]:
        """Ids of the stored images, sorted."""
        return sorted(self._index)

    @property
    def finished_ids(self) -> set[str]:
        """Stored and failed ids: the images a resumed run skips."""
        return set(self._index) | {f["id"] for f in self.failures}

    def __len__(self) -> int:
        return len(self._index)

    def __contains__(self, image_id: object) -> bool:
        return image_id in self._index

    def _file(self, p: int) -> h5py.File:
        if os.getpid() != self._pid:  # a forked worker: never reuse the parent's HDF5 handles
            self._handles, self._pid = {}, os.getpid()
        if p not in self._handles:
            self._handles[p] = h5py.File(self.parts[p], "r")
        return self._handles[p]

    def get(self, image_id: str) -> StoredGrid:
        """The stored features of one image; KeyError names the store and the id."""
        if self._cache is not None and image_id in self._cache:
            return self._cache[image_id]
        try:
            p, gname, row = self._index[image_id]
        except KeyError:
            raise KeyError(f"{self.root}: no features for image {image_id!r}") from None
        grp = self._file(p)[gname]
        pooled = grp["pooled"][row] if "pooled" in grp else None
        return StoredGrid(grp["feats"][row], grp["mask"][row], tuple(int(x) for x in grp.attrs["hw"]), pooled)

    def grids(self, image_ids: Iterable[str], dtype: torch.dtype = torch.float32) -> GridFeatures:
        """A batch of images (all of one grid shape) as GridFeatures."""
        ids = list(image_ids)
        items = [self.get(i) for i in ids]
        shapes = {it.hw for it in items}
        if len(shapes) != 1:
            raise ValueError(f"{self.root}: images {ids[:4]}... have different grid shapes {sorted(shapes)}")
        feats = torch.from_numpy(np.stack([it.feats for it in items])).to(dtype)  # [B, N, C]
        mask = torch.from_numpy(np.stack([it.mask for it in items]))  # [B, N]
        hw = items[0].hw
        pooled = None
        if all(it.pooled is not None for it in items):
            pooled = torch.from_numpy(np.stack([it.pooled for it in items])).to(dtype)  # [B, D]
        return GridFeatures(feats, mask, hw, pooled)

    def write_errors_file(self) -> Path:
        """(Re)writes errors.jsonl from the parts, sorted by id."""
        path = self.root / ERRORS_FILE
        _write_json_atomic(path, sorted(self.failures, key=lambda f: f["id"]), lines=True)
        return path

    def close(self) -> None:
        for fh in self._handles.values():
            fh.close()
        self._handles = {}
