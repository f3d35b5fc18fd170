"""Boxes through each input preset into the grounding head's frame and back, against the preset arithmetic."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from clipvil.encoders.preprocess import get_preset, prepare
from clipvil.families.grounding.frame import crops_borders, grid_frame


def _prov(preset: str, resize: str | None = None, input_size: str = "") -> dict:
    return {"preset": preset, "resize": resize, "stride": 32, "input_size": input_size}


def test_vqa_resize_maps_onto_the_18x31_grid() -> None:
    """480 x 640 (H x W) image → exactly 600 x 1000; the 18 x 31 cells cover 576 x 992 of it."""
    frame = grid_frame(_prov("vqa", "official"), (480, 640), (18, 31))
    got = frame.to_unit((64, 48, 128, 96))
    want = (64 * 1000 / 640 / 992, 48 * 600 / 480 / 576, 192 * 1000 / 640 / 992, 144 * 600 / 480 / 576)
    np.testing.assert_allclose(got, want, rtol=1e-12)
    np.testing.assert_allclose(frame.to_pixels(got), (64, 48, 128, 96), rtol=1e-9)
    assert not crops_borders(_prov("vqa", "official"))


def test_views_center_crop_cuts_the_sides_of_a_wide_image() -> None:
    """100 x 160 (H x W): shorter side → 224 (x2.24), width round(358.4) = 358, crop from x = 67."""
    frame = grid_frame(_prov("views", input_size="224x224"), (100, 160), (7, 7))
    sx = 358 / 160
    np.testing.assert_allclose(frame.to_unit((40, 10, 20, 30)),
                               ((40 * sx - 67) / 224, 0.1, (60 * sx - 67) / 224, 0.4), rtol=1e-12)
    assert frame.to_unit((0, 10, 20, 30))[:3:2] == (0.0, 0.0)  # left of the crop: clipped to its edge
    assert frame.visible((40, 10, 20, 30)) == pytest.approx(1.0)
    assert frame.visible((10, 10, 40, 30)) == pytest.approx((50 - 67 / sx) / 40)
    assert frame.visible((0, 0, 20, 20)) == 0.0
    assert crops_borders(_prov("views"))


def test_native_crop_reads_its_size_from_the_provenance() -> None:
    frame = grid_frame(_prov("native", input_size="96x96"), (96, 96), (3, 3))
    np.testing.assert_allclose(frame.to_unit((0, 0, 48, 96)), (0, 0, 0.5, 1.0))


def test_pad_frame_agrees_with_the_prepared_pixels() -> None:
    """The pretrain preset on a 100 x 160 image: content 384 x 614 top-left of 384 x 640, 20 real columns. A
    white box drawn on the image must land where the frame says in the prepared tensor."""
    image = Image.new("RGB", (160, 100), (0, 0, 0))
    box = (50, 20, 40, 30)
    image.paste((255, 255, 255), (50, 20, 90, 50))
    prepared = prepare(image, get_preset("pretrain"), (0.0, 0.0, 0.0), (1.0, 1.0, 1.0))
    assert prepared.content_hw == (384, 614)
    frame = grid_frame(_prov("pretrain", input_size="384x640 (or transposed), padded"), (100, 160), (12, 20))
    x0, y0, x1, y1 = frame.to_unit(box)
    cols = torch.nonzero(prepared.pixels[0].max(0).values > 0.5).flatten()  # [k] white columns
    rows = torch.nonzero(prepared.pixels[0].max(1).values > 0.5).flatten()  # [k] white rows
    assert x0 * 640 == pytest.approx(int(cols.min()), abs=1.5)
    assert x1 * 640 == pytest.approx(int(cols.max()) + 1, abs=1.5)
    assert y0 * 384 == pytest.approx(int(rows.min()), abs=1.5)
    assert y1 * 384 == pytest.approx(int(rows.max()) + 1, abs=1.5)
    # the real cells reach past the content (640 > 614): the whole frame is a little wider than the image
    assert frame.covered() == pytest.approx((0, 0, 160, 100))
    assert frame.to_unit((0, 0, 160, 100))[2] == pytest.approx(614 / 640, abs=2e-3)


def test_provenance_without_a_preset_is_named() -> None:
    with pytest.raises(KeyError, match="no 'preset'"):
        grid_frame({"stride": 32}, (10, 10), (1, 1))
