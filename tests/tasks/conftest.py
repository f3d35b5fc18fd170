"""A small synthetic VQA world with a feature store in the real format (random grids, fast)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from clipvil.data.synthetic import make_data
from clipvil.encoders import build_encoder
from clipvil.apps.extract import ExtractConfig, list_images, provenance
from clipvil.features.store import GridBatch, open_for_writing, write_part


@pytest.fixture(scope="session")
def vqa_world(tmp_path_factory: pytest.TempPathFactory) -> Path:
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
