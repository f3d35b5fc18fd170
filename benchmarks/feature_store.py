"""Feature-store speed: opening with the consolidated index vs scanning every part; lazy reads vs preloaded.

Side by side in one run, on synthetic stores of tiny grids (2x2 cells of 8 channels, fp16) written in the real
format (one HDF5 part per 16 images, as `clipvil extract --batch-size 16` writes them):
- open: `FeatureStore(root)` on 100k images with index.npz, and with it removed (every part opened); plus a
  1M-image store (parts of 1000) opened with its index;
- read: samples/s of `store.grids(batch)` over random batches of 64 ids, from the on-disk store (lazy HDF5
  reads) and after `preload()`.

    .venv/bin/python benchmarks/feature_store.py --out benchmarks/results/feature_store.json
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.common import best_seconds, write_json
from clipvil.features.index import INDEX_FILE
from clipvil.features.store import FeatureStore, GridBatch, open_for_writing, write_part

HW, DIM = (2, 2), 8


def make_store(root: Path, n: int, per_part: int) -> FeatureStore:
    """A store of n synthetic images in parts of `per_part`, with its index written at the end."""
    open_for_writing(root, {"encoder": "synthetic", "dim": DIM})
    rng = np.random.default_rng(0)
    cells = HW[0] * HW[1]
    for start in range(0, n, per_part):
        ids = [f"img{i:07d}" for i in range(start, min(start + per_part, n))]
        feats = rng.standard_normal((len(ids), cells, DIM)).astype(np.float16)  # [n, N, C]
        write_part(root, [GridBatch(ids, feats, np.ones((len(ids), cells), bool), HW, None)], [])
    store = FeatureStore(root)
    store.write_index()
    return store


def read_rate(store: FeatureStore, ids: list[str], batches: int, batch: int) -> float:
    rng = np.random.default_rng(1)
    picks = [[ids[j] for j in rng.integers(0, len(ids), batch)] for _ in range(batches)]
    start = time.perf_counter()
    for b in picks:
        store.grids(b)
    return batches * batch / (time.perf_counter() - start)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=100_000)
    ap.add_argument("--per-part", type=int, default=16)
    ap.add_argument("--million", type=int, default=1_000_000, help="images of the large store (0: skip it)")
    ap.add_argument("--batches", type=int, default=300)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--out", default="benchmarks/results/feature_store.json")
    args = ap.parse_args()
    results: dict[str, object] = {}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "store"
        t0 = time.perf_counter()
        store = make_store(root, args.images, args.per_part)
        results["write_seconds"] = round(time.perf_counter() - t0, 1)
        results["parts"] = len(store.parts)
        with_index = best_seconds(lambda: FeatureStore(root), repeats=5)
        index_copy = (root / INDEX_FILE).read_bytes()
        (root / INDEX_FILE).unlink()
        without_index = best_seconds(lambda: FeatureStore(root), repeats=2, warmup=1)
        (root / INDEX_FILE).write_bytes(index_copy)
        results["open_seconds_with_index"] = round(with_index, 4)
        results["open_seconds_scanning_parts"] = round(without_index, 3)
        results["open_speedup"] = round(without_index / with_index, 1)
        ids = FeatureStore(root).ids
        lazy = read_rate(FeatureStore(root), ids, args.batches, args.batch)
        eager = read_rate(FeatureStore(root).preload(), ids, args.batches, args.batch)
        results["read_samples_per_s_on_disk"] = round(lazy)
        results["read_samples_per_s_preloaded"] = round(eager)
        results["preload_speedup"] = round(eager / lazy, 1)
        if args.million:
            big = Path(tmp) / "million"
            make_store(big, args.million, 1000)
            results["million_open_seconds_with_index"] = round(best_seconds(lambda: FeatureStore(big), repeats=3), 4)
    write_json(args.out, {"benchmark": "feature_store", "images": args.images, "per_part": args.per_part,
                          "grid": f"{HW[0]}x{HW[1]}x{DIM} fp16", "batch": args.batch, "results": results})


if __name__ == "__main__":
    main()
