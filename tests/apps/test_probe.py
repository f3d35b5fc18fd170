"""Linear probes of a tower's grids: a store holding the image's own pixels knows colour and position far
better than a store of noise, and each target is read from the scene file."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from clipvil.apps.extract import ExtractConfig, list_images, provenance
from clipvil.apps.probe import ATTRIBUTES, format_probe_table, probe_stores, scene_targets
from clipvil.data.synthetic import make_data
from clipvil.encoders import build_encoder
from clipvil.features.store import GridBatch, open_for_writing, write_part


def _store(world: Path, root: Path, grid_of) -> Path:  # grid_of: image path -> [N, C]
    images = world / "coco"
    open_for_writing(root, provenance(ExtractConfig("RN50", images, root, preset="views"), build_encoder("RN50")))
    entries = list_images(images)
    for start in range(0, len(entries), 32):
        chunk = entries[start:start + 32]
        feats = np.stack([grid_of(e.path) for e in chunk]).astype(np.float16)  # [B, N, C]
        write_part(root, [GridBatch([e.id for e in chunk], feats, np.ones(feats.shape[:2], bool), (8, 8), None)], [])
    return root


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("probe")
    make_data(root / "world", 600, seed=4, progress=False, workers=1)
    return root


def test_pixels_know_colour_and_position_noise_does_not(world: Path) -> None:
    def pixels(path: Path) -> np.ndarray:  # a "tower" that sees colour and where the backdrop is not
        small = np.asarray(Image.open(path).convert("RGB").resize((8, 8), Image.Resampling.BOX), np.float32) / 255
        away = np.abs(small - np.median(small.reshape(64, 3), axis=0)).sum(-1, keepdims=True)  # [8, 8, 1]
        return np.concatenate([small, away], -1).reshape(64, 4)  # [64, 4]

    rng = np.random.default_rng(0)
    stores = {"pixels": _store(world / "world", world / "pixels", pixels),
              "noise": _store(world / "world", world / "noise", lambda _: rng.standard_normal((64, 4)))}
    result = probe_stores(world / "world", stores)
    assert set(result["pixels"]) == set(ATTRIBUTES)
    assert result["pixels"]["colour"] > result["noise"]["colour"] + 15
    assert result["pixels"]["position"] > result["noise"]["position"] + 10
    assert result["pixels"]["shape"] > result["noise"]["shape"]
    table = format_probe_table(result)
    assert "pixels" in table and "position" in table.splitlines()[0]


def test_targets_are_read_from_the_scene(world: Path) -> None:
    scene = json.loads((world / "world" / "scenes" / "scenes_val2014.json").read_text())["scenes"][0]
    t = scene_targets(scene)
    assert int(t["shape"].sum()) == len({o["shape"] for o in scene["objects"]})
    assert int(t["colour"].sum()) == len({o["color"] for o in scene["objects"]})
    assert t["count"] == len(scene["objects"]) - 2
    cells = {3 * min(2, int(3 * o["y"] / 224)) + min(2, int(3 * o["x"] / 224)) for o in scene["objects"]}
    assert {int(i) for i in np.nonzero(t["position"])[0]} == cells


def test_a_store_of_another_world_is_named(world: Path, tmp_path: Path) -> None:
    other = tmp_path / "w2"
    make_data(other, 40, seed=9, progress=False, workers=1)
    store = _store(other, tmp_path / "s", lambda _: np.zeros((64, 3)))
    with pytest.raises(KeyError, match="no features for train2014/COCO_train2014_"):
        probe_stores(world / "world", {"x": store})
