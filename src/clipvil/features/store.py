"""The feature store: grid features in HDF5, written in atomic parts, read as one store by image id.

Layout of a store directory::

    STORE/provenance.json        what made the features (encoder, weights sha256, preset, layer, dtype, versions)
    STORE/parts/part-<hash>.h5   one finished batch each; written to a temp name then renamed into place
    STORE/index.npz              id → (part, row) and each part's shapes (clipvil.features.index), rewritten at
                                 the end of each extraction; opening the store reads it instead of every part
    STORE/errors.jsonl           images that still fail (id, path, reason), regenerated from the parts

Every part is complete or absent: a job killed at any moment (even ``kill -9``) leaves at most a temp file,
which readers never look at and the next run deletes. Several processes (``torchrun``) write parts side by
side; the reader takes every part of the directory as one store. Parts are never rewritten: each has a fresh
name. A failed image is not finished work: a later run retries it, and once stored it no longer counts as failed.
Inside a part, images of one grid shape are
stacked: ``g<k>/ids`` [n], ``g<k>/feats`` [n, N, C], ``g<k>/mask`` [n, N], ``g<k>/pooled`` [n, D] (optional),
with the grid (h, w) as the group's attribute ``hw``; failed images are in the part's ``failed`` JSON attribute.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import uuid
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch

from clipvil.common.atomic import atomic_write, atomic_write_json
from clipvil.features.index import INDEX_FILE, GroupInfo, PartScan, load_index, save_index, scan_part
from clipvil.types import GridFeatures

log = logging.getLogger(__name__)

PROVENANCE_FILE = "provenance.json"
PARTS_DIR = "parts"
ERRORS_FILE = "errors.jsonl"
MAX_OPEN_PARTS = 64  # HDF5 handles kept open per process (least recently used closed first)


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
    atomic_write_json(path, payload, lines=lines, indent=None if lines else 2)


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
        if diff and not has_parts(root):  # an empty store (a start that failed) locks nothing
            log.warning("%s: replacing the provenance of an empty store (%s)", prov_path, ", ".join(diff))
            os.replace(tmp, prov_path)
        elif diff:
            lines = "; ".join(f"{k}: store has {a!r}, this run has {b!r}" for k, (a, b) in diff.items())
            raise ProvenanceMismatch(
                f"{prov_path}: refusing to add features made differently ({lines}). Use another --out.")
    finally:
        tmp.unlink(missing_ok=True)
    for leftover in (root / PARTS_DIR).glob(f".part-*.tmp-r{rank}-*"):
        leftover.unlink()
    return root


def has_parts(root: str | Path) -> bool:
    """Whether the store holds any finished part."""
    parts = Path(root) / PARTS_DIR
    return parts.is_dir() and any(n.startswith("part-") and n.endswith(".h5") for n in os.listdir(parts))


def remove_if_empty(root: str | Path) -> bool:
    """Deletes a store that holds no part (its provenance, index, errors file and empty parts folder), so a start
    that failed leaves nothing behind; returns whether it did."""
    root = Path(root)
    if not root.is_dir() or has_parts(root):
        return False
    for name in (PROVENANCE_FILE, INDEX_FILE, ERRORS_FILE):
        (root / name).unlink(missing_ok=True)
    for d in (root / PARTS_DIR, root):
        try:
            d.rmdir()
        except OSError:  # holds something else (temp files of a live rank, the user's files): keep it
            break
    return True


def write_part(root: Path, groups: Sequence[GridBatch], failed: Sequence[dict[str, str]], rank: int = 0) -> Path:
    """Writes one finished batch atomically (temp file, fsync, rename) under a fresh name; returns its path."""
    ids = [i for g in groups for i in g.ids] + [f["id"] for f in failed]
    name = f"{hashlib.sha1(chr(10).join(ids).encode()).hexdigest()[:16]}-{uuid.uuid4().hex[:8]}"
    final = root / PARTS_DIR / f"part-{name}.h5"
    tmp = root / PARTS_DIR / f".part-{name}.tmp-r{rank}-{os.getpid()}"

    def write(path: Path) -> None:
        with h5py.File(path, "w") as fh:
            fh.attrs["failed"] = json.dumps(list(failed))
            for k, g in enumerate(groups):
                grp = fh.create_group(f"g{k}")
                grp.attrs["hw"] = np.asarray(g.hw, dtype=np.int64)
                grp.create_dataset("ids", data=np.asarray(g.ids, dtype=object), dtype=h5py.string_dtype())
                grp.create_dataset("feats", data=g.feats)
                grp.create_dataset("mask", data=g.mask.astype(bool))
                if g.pooled is not None:
                    grp.create_dataset("pooled", data=g.pooled)

    atomic_write(final, write, tmp=tmp)  # temp file, fsync, rename, directory fsync
    return final


class FeatureStore:
    """Reads a store (all its parts) by image id, lazily: opening reads the index (and scans only the parts the
    index does not list); features are read from the parts on demand, through HDF5 handles opened per process
    (safe after a DataLoader worker forks). `preload()` reads everything into memory instead."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        prov = self.root / PROVENANCE_FILE
        if not prov.is_file():
            raise FileNotFoundError(f"{self.root}: not a feature store (no {PROVENANCE_FILE})")
        self.provenance: dict[str, Any] = json.loads(prov.read_text())
        parts_dir = self.root / PARTS_DIR
        on_disk = sorted(n for n in os.listdir(parts_dir) if n.startswith("part-") and n.endswith(".h5")) \
            if parts_dir.is_dir() else []
        self.parts: list[Path] = [parts_dir / n for n in on_disk]
        self.groups: list[GroupInfo] = []
        self._keys = np.zeros(0, dtype="S1")  # [M] sorted ids of the indexed parts
        self._key_group = np.zeros(0, dtype=np.int32)  # [M]
        self._key_row = np.zeros(0, dtype=np.int32)  # [M]
        self._extra: dict[str, tuple[int, int]] = {}  # ids of scanned (unindexed) parts → (group, row)
        self._indexed_parts: set[str] = set()
        failures = self._load_index(on_disk)
        self.scanned_parts = self._scan_unindexed(on_disk, failures)
        self._count = len(self._keys) + sum(1 for k in self._extra if self._find_indexed(k) is None)
        self.failures: list[dict[str, str]] = sorted(
            (f for i, f in failures.items() if i not in self), key=lambda f: f["id"])
        self._handles: OrderedDict[int, h5py.File] = OrderedDict()
        self._pid = os.getpid()
        self._memory: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray | None]] | None = None

    def _load_index(self, on_disk: list[str]) -> dict[str, dict[str, str]]:
        """Takes the rows of the index whose parts still exist; returns the index's failures by id."""
        idx = load_index(self.root)
        if idx is None:
            return {}
        position = {n: p for p, n in enumerate(on_disk)}
        alive = np.asarray([idx.parts[g.part] in position for g in idx.groups], dtype=bool)  # [G]
        new_group = np.cumsum(alive) - 1  # [G] old group → new group number
        for g, keep in zip(idx.groups, alive, strict=True):
            if keep:
                self.groups.append(GroupInfo(position[idx.parts[g.part]], g.name, g.hw, g.count, g.cells, g.dim,
                                             g.pooled, g.dtype))
        rows = alive[idx.key_group] if len(idx.groups) else np.zeros(len(idx.keys), dtype=bool)  # [M]
        self._keys, self._key_row = idx.keys[rows], idx.key_row[rows]
        self._key_group = new_group[idx.key_group[rows]].astype(np.int32) if rows.any() else self._key_group[:0]
        self._indexed_parts = {n for n in idx.parts if n in position}
        return {f["id"]: f for f in idx.failures}

    def _scan_unindexed(self, on_disk: list[str], failures: dict[str, dict[str, str]]) -> int:
        """Reads the parts the index does not list (newest last, so a later failure record wins)."""
        todo = [(p, n) for p, n in enumerate(on_disk) if n not in self._indexed_parts]
        todo.sort(key=lambda pn: (self.parts[pn[0]].stat().st_mtime_ns, pn[1]))
        for p, _ in todo:
            scan: PartScan = scan_part(self.parts[p], p)
            for group, ids in zip(scan.groups, scan.ids, strict=True):
                self.groups.append(group)
                for row, image_id in enumerate(ids):
                    self._extra[image_id] = (len(self.groups) - 1, row)
            failures.update({f["id"]: f for f in scan.failures})
        return len(todo)

    def _find_indexed(self, image_id: str) -> tuple[int, int] | None:
        key = image_id.encode()
        i = int(np.searchsorted(self._keys, key))
        if i < len(self._keys) and self._keys[i] == key:
            return int(self._key_group[i]), int(self._key_row[i])
        return None

    def _locate(self, image_id: str) -> tuple[int, int] | None:
        """(group, row) of an image, or None."""
        found = self._extra.get(image_id)
        return found if found is not None else self._find_indexed(image_id)

    def write_index(self) -> Path:
        """Writes the consolidated index of what this store object sees (call after all writers finished)."""
        names = [p.name for p in self.parts]
        keys, groups, rows = [self._keys], [self._key_group], [self._key_row]
        if self._extra:
            extra_ids = sorted(self._extra)
            keys.append(np.asarray([i.encode() for i in extra_ids], dtype=np.bytes_))
            groups.append(np.asarray([self._extra[i][0] for i in extra_ids], dtype=np.int32))
            rows.append(np.asarray([self._extra[i][1] for i in extra_ids], dtype=np.int32))
        all_keys = np.concatenate([k.astype(np.bytes_) for k in keys]) if keys else self._keys
        all_groups, all_rows = np.concatenate(groups), np.concatenate(rows)
        order = np.argsort(all_keys, kind="stable")  # [M]
        sorted_keys = all_keys[order]
        last = np.ones(len(order), dtype=bool)  # where an id repeats (a scanned part overrides), keep the later
        last[:-1] = sorted_keys[1:] != sorted_keys[:-1]
        pick = order[last]
        return save_index(self.root, names, self.groups, all_keys[pick], all_groups[pick], all_rows[pick],
                          self.failures)

    def preload(self) -> FeatureStore:
        """Reads every part into memory once (fast random access for training on cached grids)."""
        memory: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray | None]] = {}
        by_part: dict[int, list[int]] = {}
        for g, info in enumerate(self.groups):
            by_part.setdefault(info.part, []).append(g)
        for part, gs in by_part.items():
            with h5py.File(self.parts[part], "r") as fh:
                for g in gs:
                    grp = fh[self.groups[g].name]
                    memory[g] = (grp["feats"][()], grp["mask"][()], grp["pooled"][()] if "pooled" in grp else None)
        self._memory = memory
        return self

    @property
    def nbytes(self) -> int:
        """Bytes the features, masks and pooled embeddings take in memory (what `preload` would hold)."""
        total = 0
        for g in self.groups:
            item = np.dtype(g.dtype).itemsize
            total += g.count * (g.cells * g.dim * item + g.cells + max(g.pooled, 0) * item)
        return total

    def fits_in_memory(self, max_bytes: int) -> bool:
        """Whether preloading this store would take at most `max_bytes`."""
        return self.nbytes <= max_bytes

    @property
    def ids(self) -> list[str]:
        """Ids of the stored images, sorted."""
        return sorted({k.decode() for k in self._keys.tolist()} | set(self._extra))

    @property
    def stored_ids(self) -> set[str]:
        """Ids of the stored images."""
        return set(self.ids)

    @property
    def finished_ids(self) -> set[str]:
        """The images a resumed run skips: the stored ones (failures are not finished work; they are retried)."""
        return self.stored_ids

    @property
    def failed_ids(self) -> set[str]:
        """Ids of the images that failed and are not stored."""
        return {f["id"] for f in self.failures}

    def __len__(self) -> int:
        return self._count

    def __contains__(self, image_id: object) -> bool:
        return isinstance(image_id, str) and self._locate(image_id) is not None

    def _file(self, p: int) -> h5py.File:
        if os.getpid() != self._pid:  # a forked worker: never reuse the parent's HDF5 handles
            self._handles, self._pid = OrderedDict(), os.getpid()
        if p in self._handles:
            self._handles.move_to_end(p)
            return self._handles[p]
        if len(self._handles) >= MAX_OPEN_PARTS:
            self._handles.popitem(last=False)[1].close()
        self._handles[p] = h5py.File(self.parts[p], "r")
        return self._handles[p]

    def _where(self, image_id: str) -> tuple[int, int]:
        found = self._locate(image_id)
        if found is None:
            raise KeyError(f"{self.root}: no features for image {image_id!r}")
        return found

    def _read_rows(self, g: int, rows: list[int]) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """Features, masks and pooled embeddings of `rows` of group `g`, in that order."""
        if self._memory is not None:
            feats, mask, pooled = self._memory[g]
            return feats[rows], mask[rows], None if pooled is None else pooled[rows]
        grp = self._file(self.groups[g].part)[self.groups[g].name]
        uniq = sorted(set(rows))  # HDF5 reads take increasing, unique indices
        lo, hi = uniq[0], uniq[-1] + 1
        if hi - lo <= 4 * len(uniq):  # dense enough: one contiguous read, then pick in memory
            pick = np.asarray(rows) - lo

            def read(name: str) -> np.ndarray:
                return grp[name][lo:hi][pick]
        else:
            pick = np.searchsorted(uniq, rows)

            def read(name: str) -> np.ndarray:
                return grp[name][uniq][pick]
        return read("feats"), read("mask"), read("pooled") if "pooled" in grp else None

    def get(self, image_id: str) -> StoredGrid:
        """The stored features of one image; KeyError names the store and the id."""
        g, row = self._where(image_id)
        feats, mask, pooled = self._read_rows(g, [row])
        return StoredGrid(feats[0], mask[0], self.groups[g].hw, None if pooled is None else pooled[0])

    def grids(self, image_ids: Iterable[str], dtype: torch.dtype = torch.float32) -> GridFeatures:
        """A batch of images (all of one grid shape) as GridFeatures, read group by group."""
        ids = list(image_ids)
        where = [self._where(i) for i in ids]
        shapes = {self.groups[g].hw for g, _ in where}
        if len(shapes) != 1:
            raise ValueError(f"{self.root}: images {ids[:4]}... have different grid shapes {sorted(shapes)}")
        by_group: dict[int, list[int]] = {}
        for n, (g, _) in enumerate(where):
            by_group.setdefault(g, []).append(n)
        g0 = self.groups[where[0][0]]
        feats = np.empty((len(ids), g0.cells, g0.dim), dtype=np.dtype(g0.dtype))  # [B, N, C]
        mask = np.empty((len(ids), g0.cells), dtype=bool)  # [B, N]
        pooled: np.ndarray | None = None
        with_pooled = all(self.groups[g].pooled >= 0 for g in by_group)
        if with_pooled:
            pooled = np.empty((len(ids), g0.pooled), dtype=np.dtype(g0.dtype))  # [B, D]
        for g, slots in by_group.items():
            f, m, p = self._read_rows(g, [where[n][1] for n in slots])
            feats[slots], mask[slots] = f, m
            if pooled is not None and p is not None:
                pooled[slots] = p
        pooled_t = None if pooled is None else torch.from_numpy(pooled).to(dtype)  # [B, D]
        return GridFeatures(torch.from_numpy(feats).to(dtype), torch.from_numpy(mask), g0.hw, pooled_t)

    def write_errors_file(self) -> Path:
        """(Re)writes errors.jsonl: the images that still fail, sorted by id."""
        path = self.root / ERRORS_FILE
        _write_json_atomic(path, self.failures, lines=True)
        return path

    def close(self) -> None:
        for fh in self._handles.values():
            fh.close()
        self._handles = OrderedDict()
