"""A tiny navigation world for the VLN task tests: two real scans of the shared connectivity graphs, the
embedded world's instructions (no rendering), and view features written as a released TSV and imported.

Each view feature is seeded noise fixed by (scan, viewpoint): features differ between places, nothing more."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from clipvil.apps.import_views import run_import_views
from clipvil.data.nav import load_nav_graphs
from clipvil.data.synthetic.nav_world import NavWorldSpec, make_nav_world
from clipvil.data.view_tsv import write_view_tsv

CONNECTIVITY = Path(__file__).resolve().parents[3].parent / "shared/data/clip-vil/connectivity"
SPEC = NavWorldSpec(train_scans=("8194nk5LbLH",), unseen_scans=("GdvgFV5R1Z5",), train_paths=16,
                    val_seen_paths=3, val_unseen_paths=4, aug_paths=8, languages=("en", "hi"))
DIM = 16


def view_features(scan: str, viewpoint: str) -> np.ndarray:
    """[36, DIM] float32, deterministic in (scan, viewpoint)."""
    seed = int.from_bytes(hashlib.sha256(f"{scan}/{viewpoint}".encode()).digest()[:8], "little")
    return np.random.default_rng(seed).standard_normal((36, DIM)).astype(np.float32)


def build(root: Path) -> dict[str, Path]:
    """world/ (R2R + RxR files, connectivity) and store/ (the imported view features)."""
    world = root / "world"
    make_nav_world(world, CONNECTIVITY, SPEC, render=False)
    graphs = load_nav_graphs(world / "connectivity")
    rows = {(scan, vp): view_features(scan, vp) for scan, g in graphs.items() for vp in sorted(g.nodes)}
    write_view_tsv(root / "views.tsv", rows)
    run_import_views(root / "views.tsv", root / "store", encoder="test-views")
    return {"world": world, "store": root / "store", "connectivity": world / "connectivity",
            "tsv": root / "views.tsv"}


def overrides(paths: dict[str, Path], out: Path, *extra: str) -> list[str]:
    """Overrides filling the tiny recipe's data paths."""
    return [f"task.data_dir={paths['world']}", f"task.connectivity={paths['connectivity']}",
            f"task.features={paths['store']}", f"out_dir={out}", *extra]
