"""The feature store: lazy by default (the index is read, no part is opened), stale indexes detected, failures
retried, reads in any order, preload equal to lazy reads, sizes computed by hand, fork-safe reads."""

from __future__ import annotations

import json
import os
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, Dataset

import clipvil.features.index as index_mod
import clipvil.features.store as store_mod
from clipvil.features.index import INDEX_FILE
from clipvil.features.store import (
    ERRORS_FILE,
    PROVENANCE_FILE,
    FeatureStore,
    GridBatch,
    ProvenanceMismatch,
    open_for_writing,
    remove_if_empty,
    write_part,
)

PROV = {"encoder": "RN50", "preset": "views", "dim": 4}


def _batch(ids: list[str], hw: tuple[int, int] = (2, 3), dim: int = 4, pooled: bool = True) -> GridBatch:
    n, cells = len(ids), hw[0] * hw[1]
    base = np.asarray([float(i.split("-")[-1]) for i in ids], dtype=np.float32)  # each id's number → its values
    feats = (base[:, None, None] + np.arange(cells * dim, dtype=np.float32).reshape(1, cells, dim) / 100)
    mask = np.ones((n, cells), dtype=bool)
    mask[:, -1] = False
    pool = (base[:, None] * np.ones((1, 5), dtype=np.float32)) if pooled else None
    return GridBatch(ids, feats.astype(np.float16), mask, hw, None if pool is None else pool.astype(np.float16))


def _store(root: Path, n_parts: int = 4, per_part: int = 3) -> Path:
    open_for_writing(root, PROV)
    for p in range(n_parts):
        write_part(root, [_batch([f"img-{p * per_part + r}" for r in range(per_part)])], [])
    return root


class _CountOpens:
    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.paths: list[str] = []
        real = h5py.File

        def counting(path: object, *args: object, **kw: object) -> h5py.File:
            self.paths.append(str(path))
            return real(path, *args, **kw)

        monkeypatch.setattr(store_mod.h5py, "File", counting)  # one h5py module: store and index both use it
        assert index_mod.h5py.File is counting


def test_index_is_written_and_used_no_part_opened_at_start(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = _store(tmp_path / "s")
    assert not (root / INDEX_FILE).exists()
    FeatureStore(root).write_index()
    assert (root / INDEX_FILE).is_file()
    opens = _CountOpens(monkeypatch)
    store = FeatureStore(root)
    assert opens.paths == [], "opening an indexed store must not open any part"
    assert len(store) == 12 and "img-7" in store and "img-99" not in store and store.scanned_parts == 0
    assert store.provenance == PROV
    got = store.get("img-7")
    assert len(opens.paths) == 1 and got.hw == (2, 3)
    assert float(got.feats[0, 0]) == 7.0 and float(got.feats[5, 3]) == pytest.approx(7.23, abs=1e-2)
    assert got.mask.tolist() == [True] * 5 + [False] and float(got.pooled[0]) == 7.0


def test_stale_index_new_part_is_scanned_and_deleted_part_dropped(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    root = _store(tmp_path / "s")
    FeatureStore(root).write_index()
    newer = write_part(root, [_batch(["img-100", "img-101"])], [{"id": "bad", "path": "/x/bad.jpg", "reason": "r"}])
    gone = min(p for p in (root / "parts").glob("part-*.h5") if p != newer)
    with h5py.File(gone, "r") as fh:
        gone_ids = [str(i) for i in fh["g0/ids"].asstr()[()]]
    gone.unlink()
    opens = _CountOpens(monkeypatch)
    store = FeatureStore(root)
    assert opens.paths == [str(newer)], "only the part the index does not list is read"
    assert store.scanned_parts == 1 and len(store) == 12 - 3 + 2
    assert "img-101" in store and not any(i in store for i in gone_ids)
    assert [f["id"] for f in store.failures] == ["bad"]
    np.testing.assert_array_equal(store.get("img-101").feats, _batch(["img-101"]).feats[0])


def test_failure_fixed_later_no_longer_counts(tmp_path: Path) -> None:
    root = _store(tmp_path / "s", n_parts=1)
    write_part(root, [], [{"id": "img-50", "path": "/a.jpg", "reason": "truncated"},
                          {"id": "img-51", "path": "/b.jpg", "reason": "truncated"}])
    assert FeatureStore(root).failed_ids == {"img-50", "img-51"}
    write_part(root, [_batch(["img-50"])], [])  # the file was fixed: a rerun stored it
    store = FeatureStore(root)
    assert store.failed_ids == {"img-51"} and "img-50" in store and "img-50" in store.finished_ids
    assert "img-51" not in store.finished_ids, "failures are not finished work"
    store.write_index()
    store.write_errors_file()
    again = FeatureStore(root)
    assert again.failed_ids == {"img-51"} and len(again) == 4
    lines = [json.loads(x) for x in (root / ERRORS_FILE).read_text().splitlines()]
    assert [e["id"] for e in lines] == ["img-51"]


def test_grids_any_order_across_parts_and_preload_equal(tmp_path: Path) -> None:
    root = _store(tmp_path / "s")
    FeatureStore(root).write_index()
    order = ["img-11", "img-0", "img-5", "img-4", "img-0"]
    lazy = FeatureStore(root).grids(order)
    assert lazy.feats.dtype == torch.float32 and lazy.feats.shape == (5, 6, 4) and lazy.hw == (2, 3)
    assert lazy.feats[:, 0, 0].tolist() == [11.0, 0.0, 5.0, 4.0, 0.0]
    assert lazy.pooled is not None and lazy.pooled[:, 0].tolist() == [11.0, 0.0, 5.0, 4.0, 0.0]
    assert lazy.mask[:, -1].tolist() == [False] * 5 and bool(lazy.mask[:, :-1].all())
    eager = FeatureStore(root).preload().grids(order)
    torch.testing.assert_close(eager.feats, lazy.feats)
    torch.testing.assert_close(eager.pooled, lazy.pooled)
    with pytest.raises(KeyError, match="no features for image 'nope'"):
        FeatureStore(root).grids(["img-1", "nope"])


def test_mixed_grid_shapes_are_refused_in_one_batch(tmp_path: Path) -> None:
    root = tmp_path / "s"
    open_for_writing(root, PROV)
    write_part(root, [_batch(["a-1"], (2, 3)), _batch(["b-2"], (3, 2))], [])
    store = FeatureStore(root)
    assert store.get("b-2").hw == (3, 2)
    with pytest.raises(ValueError, match="different grid shapes"):
        store.grids(["a-1", "b-2"])


def test_nbytes_and_fits_in_memory(tmp_path: Path) -> None:
    root = _store(tmp_path / "s", n_parts=2, per_part=3)
    store = FeatureStore(root)
    per_image = 6 * 4 * 2 + 6 * 1 + 5 * 2  # fp16 feats [6, 4] + bool mask [6] + fp16 pooled [5]
    assert store.nbytes == 6 * per_image
    assert store.fits_in_memory(6 * per_image) and not store.fits_in_memory(6 * per_image - 1)


def test_open_handles_are_capped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = _store(tmp_path / "s", n_parts=5, per_part=1)
    monkeypatch.setattr(store_mod, "MAX_OPEN_PARTS", 2)
    store = FeatureStore(root)
    for i in range(5):
        assert float(store.get(f"img-{i}").feats[0, 0]) == float(i)
    assert len(store._handles) == 2


class _Reads(Dataset):
    def __init__(self, store: FeatureStore) -> None:
        self.store = store

    def __len__(self) -> int:
        return 6

    def __getitem__(self, i: int) -> tuple[int, float]:
        return os.getpid(), float(self.store.get(f"img-{i}").feats[0, 0])


def test_reads_after_dataloader_fork(tmp_path: Path) -> None:
    store = FeatureStore(_store(tmp_path / "s", n_parts=2))
    store.get("img-0")  # the parent holds an open handle before the workers fork
    loader = DataLoader(_Reads(store), batch_size=None, num_workers=2,
                        multiprocessing_context="fork")
    got = list(loader)
    assert sorted(v for _, v in got) == [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]
    assert {pid for pid, _ in got} - {os.getpid()}, "read in the worker processes"


def test_empty_store_does_not_lock_a_corrected_provenance(tmp_path: Path) -> None:
    root = tmp_path / "s"
    open_for_writing(root, {"preset": "vqa"})
    open_for_writing(root, {"preset": "views"})  # no part yet: the provenance is replaced
    assert json.loads((root / PROVENANCE_FILE).read_text()) == {"preset": "views"}
    write_part(root, [_batch(["img-1"])], [])
    with pytest.raises(ProvenanceMismatch, match="preset: store has 'views', this run has 'vqa'"):
        open_for_writing(root, {"preset": "vqa"})
    assert not remove_if_empty(root) and (root / PROVENANCE_FILE).exists()
    empty = tmp_path / "e"
    open_for_writing(empty, {"preset": "vqa"})
    assert remove_if_empty(empty) and not empty.exists()


def test_damaged_index_falls_back_to_scanning(tmp_path: Path) -> None:
    root = _store(tmp_path / "s", n_parts=2)
    (root / INDEX_FILE).write_bytes(b"not an npz")
    store = FeatureStore(root)
    assert len(store) == 6 and store.scanned_parts == 2
