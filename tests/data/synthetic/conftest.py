"""A small synthetic world shared by the tests of this folder (made once per session)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from clipvil.data.synthetic import Manifest, make_data

N_IMAGES = 300


@pytest.fixture(scope="session")
def world(tmp_path_factory: pytest.TempPathFactory) -> Manifest:
    """300 images (240 train / 30 val / 30 test), two worker processes, default difficulty."""
    return make_data(tmp_path_factory.mktemp("world"), N_IMAGES, seed=3, workers=2, progress=False)


@pytest.fixture(scope="session")
def scenes(world: Manifest) -> dict[int, dict[str, Any]]:
    """Every scene record of the world by image id."""
    out = {}
    for split in world.splits:
        for sc in json.loads(world.path("scenes", split).read_text())["scenes"]:
            out[sc["image_id"]] = sc
    return out
