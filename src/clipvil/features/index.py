"""The consolidated index of a feature store: which part and row holds each image, without opening any part.

``STORE/index.npz`` (numpy's uncompressed npz, loaded without pickle) holds:

- ``parts`` [P]: part file names; ``group_part`` [G], ``group_name`` [G], ``group_hw`` [G, 2], ``group_count``,
  ``group_cells``, ``group_dim``, ``group_pooled`` (-1: none) [G], ``group_dtype`` [G]: each HDF5 group's shape;
- ``keys`` [M] (sorted UTF-8 ids), ``key_group`` [M], ``key_row`` [M]: where each image's row is;
- ``failures`` [1]: a JSON list of the images that still fail ({"id", "path", "reason"}).

Parts are immutable and uniquely named, so the index is stale exactly when a part on disk is not listed in it
(written after it: such parts are scanned) or a listed part is gone (its rows are dropped). The index is
written atomically (temporary file, fsync, rename): a reader sees the old index or the new one.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np

from clipvil.common.atomic import atomic_write

INDEX_FILE = "index.npz"
INDEX_VERSION = 1


@dataclass
class GroupInfo:
    """One HDF5 group of one part: images of one grid shape."""

    part: int  # position in the store's part list
    name: str  # the group's name inside the part ("g0", ...)
    hw: tuple[int, int]
    count: int  # images (rows)
    cells: int  # N = h * w
    dim: int  # C
    pooled: int  # D, or -1 without pooled embeddings
    dtype: str  # numpy dtype name of the features


@dataclass
class PartScan:
    """What one part holds, read from the part itself."""

    groups: list[GroupInfo] = field(default_factory=list)
    ids: list[list[str]] = field(default_factory=list)  # per group, its ids in row order
    failures: list[dict[str, str]] = field(default_factory=list)


def scan_part(path: Path, part: int) -> PartScan:
    """Reads one part's ids, shapes and failures (not its features)."""
    scan = PartScan()
    with h5py.File(path, "r") as fh:
        scan.failures = list(json.loads(fh.attrs.get("failed", "[]")))
        for gname, grp in fh.items():
            feats = grp["feats"]
            pooled = int(grp["pooled"].shape[1]) if "pooled" in grp else -1
            hw = tuple(int(x) for x in grp.attrs["hw"])
            scan.groups.append(GroupInfo(part, gname, (hw[0], hw[1]), int(feats.shape[0]), int(feats.shape[1]),
                                         int(feats.shape[2]), pooled, feats.dtype.name))
            scan.ids.append([str(i) for i in grp["ids"].asstr()[()]])
    return scan


@dataclass
class LoadedIndex:
    """An index file as read."""

    parts: list[str]
    groups: list[GroupInfo]
    keys: np.ndarray  # [M] bytes, sorted
    key_group: np.ndarray  # [M] int
    key_row: np.ndarray  # [M] int
    failures: list[dict[str, str]]


def load_index(root: Path) -> LoadedIndex | None:
    """The store's index, or None when there is none (or it is unreadable or of another version)."""
    path = root / INDEX_FILE
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            if int(z["version"][0]) != INDEX_VERSION:
                return None
            parts = [str(p) for p in z["parts"]]
            groups = [
                GroupInfo(int(p), str(n), (int(hw[0]), int(hw[1])), int(c), int(nc), int(d), int(pd), str(dt))
                for p, n, hw, c, nc, d, pd, dt in zip(
                    z["group_part"], z["group_name"], z["group_hw"], z["group_count"], z["group_cells"],
                    z["group_dim"], z["group_pooled"], z["group_dtype"], strict=True)
            ]
            return LoadedIndex(parts, groups, z["keys"], z["key_group"], z["key_row"],
                               json.loads(str(z["failures"][0])))
    except (OSError, KeyError, ValueError):  # a foreign or damaged file: fall back to scanning the parts
        return None


def save_index(
    root: Path, parts: list[str], groups: list[GroupInfo], keys: np.ndarray, key_group: np.ndarray,
    key_row: np.ndarray, failures: list[dict[str, str]],
) -> Path:
    """Writes the index atomically; `keys` must be sorted bytes."""
    path = root / INDEX_FILE
    arrays = {
        "version": np.asarray([INDEX_VERSION], dtype=np.int64),
        "parts": np.asarray(parts, dtype=np.str_).reshape(-1),
        "group_part": np.asarray([g.part for g in groups], dtype=np.int64),
        "group_name": np.asarray([g.name for g in groups], dtype=np.str_).reshape(-1),
        "group_hw": np.asarray([g.hw for g in groups], dtype=np.int64).reshape(-1, 2),
        "group_count": np.asarray([g.count for g in groups], dtype=np.int64),
        "group_cells": np.asarray([g.cells for g in groups], dtype=np.int64),
        "group_dim": np.asarray([g.dim for g in groups], dtype=np.int64),
        "group_pooled": np.asarray([g.pooled for g in groups], dtype=np.int64),
        "group_dtype": np.asarray([g.dtype for g in groups], dtype=np.str_).reshape(-1),
        "keys": keys, "key_group": key_group.astype(np.int32), "key_row": key_row.astype(np.int32),
        "failures": np.asarray([json.dumps(failures)], dtype=np.str_),
    }

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as fh:
            np.savez(fh, **arrays)

    atomic_write(path, write)
    return path
