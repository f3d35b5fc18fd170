"""Shared fixtures: the real data beside the repository, and a deterministic torch."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("CLIPVIL_SHARED_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Path of ../shared/data (the real samples listed in its SOURCES.md)."""
    if not SHARED_DATA.is_dir():
        raise FileNotFoundError(f"real test data not found at {SHARED_DATA}: clone the repo beside shared/")
    return SHARED_DATA


@pytest.fixture(autouse=True)
def _torch_threads() -> None:
    import torch

    torch.manual_seed(0)


@pytest.fixture(scope="session")
def vqa_world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small synthetic VQA world with a feature store in the real format (random RN50-shaped grids, fast)."""
    import numpy as np

    from clipvil.apps.extract import ExtractConfig, list_images, provenance
    from clipvil.data.synthetic import make_data
    from clipvil.encoders import build_encoder
    from clipvil.features.store import GridBatch, open_for_writing, write_part

    root = tmp_path_factory.mktemp("vqa_world")
    make_data(root / "world", 60, seed=3, progress=False, workers=1)
    images = root / "world" / "coco"
    enc = build_encoder("RN50")
    store = root / "store"
    open_for_writing(store, provenance(ExtractConfig("RN50", images, store, preset="views"), enc))
    rng = np.random.default_rng(0)
    ids = [e.id for e in list_images(images)]
    for start in range(0, len(ids), 16):
        chunk = ids[start:start + 16]
        feats = rng.standard_normal((len(chunk), 49, 2048)).astype(np.float16)
        write_part(store, [GridBatch(chunk, feats, np.ones((len(chunk), 49), bool), (7, 7), None)], [])
    return root
