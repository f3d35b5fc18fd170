"""Fixtures of the explain / localise tests: tiny VQA heads trained over two small CLIP towers' grids."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from clipvil.apps.extract import ExtractConfig, list_images, provenance
from clipvil.data.synthetic import make_data
from clipvil.encoders import build_encoder
from clipvil.engine import load_config, train
from clipvil.features.store import GridBatch, open_for_writing, write_part

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def explain_heads(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A tiny synthetic world, a tiny captioner and a tiny VQA head trained on random grids 'made' by each of two
    small CLIP towers (ResNet: 3x3 x 1024 at 96 px; ViT: 8x8 x 128 at 128 px, the native preset): the checkpoints."""
    logging.getLogger("clipvil").setLevel(logging.ERROR)
    root = tmp_path_factory.mktemp("explain")
    make_data(root / "world", 30, seed=2, progress=False, workers=1)
    images = root / "world" / "coco"
    ids = [e.id for e in list_images(images)]
    out = {"world": root / "world"}
    for name in ("clipvil-rn-tiny", "clipvil-vit-tiny"):
        enc = build_encoder(name)
        n = (enc.native_size // enc.stride) ** 2
        store = root / f"store-{name}"
        open_for_writing(store, provenance(ExtractConfig(name, images, store, preset="native"), enc))
        feats = np.random.default_rng(0).standard_normal((len(ids), n, enc.dim)).astype(np.float16)
        side = enc.native_size // enc.stride
        write_part(store, [GridBatch(ids, feats, np.ones((len(ids), n), bool), (side, side), None)], [])
        run = root / f"run-{name}"
        train(load_config(REPO / "tests/configs/vqa_tiny.yaml", [f"task.data_dir={root / 'world/vqa'}",
                                                                  f"task.features={store}", f"out_dir={run}"]))
        out[name] = run / "checkpoints/last.pt"
    run = root / "run-caption"  # a tiny captioner (2 epochs of XE) over the ResNet store
    train(load_config(REPO / "tests/configs/caption_tiny.yaml", [
        f"task.karpathy_file={root / 'world/captions/dataset_coco.json'}",
        f"task.features={root / 'store-clipvil-rn-tiny'}",
        f"out_dir={run}", "train.epochs=2"]))
    out["caption"] = run / "checkpoints/last.pt"
    return out
