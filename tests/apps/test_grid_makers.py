"""The grid makers `clipvil predict` and `clipvil serve` share: an image is encoded with the store's preset,
its resize mode included, and the server builds each tower once."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from clipvil.apps.predict import encode_image, grid_makers, grid_of
from clipvil.apps.serve_models import _Towers
from clipvil.encoders import load_image

CPU = torch.device("cpu")
PROVENANCE = {"encoder": "clipvil-rn-tiny", "preset": "vqa", "resize": "direct-bicubic",
              "weights_sha256": "random-seed0", "block": -1}


def test_served_grids_are_the_predicted_ones_with_the_stores_resize_mode(tmp_path: Path) -> None:
    path = tmp_path / "noise.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (150, 260, 3), dtype=np.uint8)).save(path)
    image = load_image(path)
    towers = _Towers([], CPU)
    makers = towers.makers(PROVENANCE, [None])
    assert makers[0].preset.resize == "direct-bicubic"  # as the store was made, not the preset's default
    assert towers.makers(PROVENANCE, [None])[0].tower is makers[0].tower  # one tower per (encoder, weights)
    served, predicted = grid_of(makers, image), encode_image(path, PROVENANCE, [], CPU)
    assert served.hw == predicted.hw == (18, 31)  # 600 // 32, 1000 // 32
    torch.testing.assert_close(served.feats, predicted.feats, rtol=0, atol=0)
    official = grid_of(grid_makers({**PROVENANCE, "resize": "official"}, [], CPU), image)
    assert (official.feats - predicted.feats).abs().max() > 1e-4  # the resize mode changes the grid
