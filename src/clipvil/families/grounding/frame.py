"""Where an image's pixels land on a cached grid: the map between image boxes and the grounding head's frame.

The grounding head (`clipvil.families.grounding.model`) works in a *unit frame*: the real (unpadded) cells of the
grid span [0, 1] in x and y. A feature store's grid covers the image as its input preset
(`clipvil.encoders.preprocess`, named in the store's provenance) made it:

| preset mode          | prepared pixel of image pixel (x, y)                 | what the real cells cover             |
|----------------------|------------------------------------------------------|---------------------------------------|
| resize (vqa,caption) | (x·W'/W, y·H'/H), ratio not kept                     | cols·stride × rows·stride of W'×H'    |
| pad (pretrain)       | (x·w/W, y·h/H), the image fit inside, top-left       | ⌈w/stride⌉·stride px: past the content|
| crop (views, native) | (x·s − left, y·s − top): shorter side scaled, centred| the crop; **image borders are cut**   |

so unit coordinates are u = (x·sx − ox) / span_x (and likewise for y), with span = (real cols, rows) ×
stride. The mapping is exact for the cell geometry the head sees (a padded input's last real cell reaches a
little past the image, and the frame says so), where "box / image size" would be off by up to a cell.

Center-crop presets cut the borders of non-square images: a box there is clipped to the crop for training
(`GridFrame.visible` tells how much of it is left) and a prediction can only lie inside the crop; evaluation
still compares boxes in the original image's pixels, so such refs count honestly.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from clipvil.encoders.preprocess import fit_inside, get_preset, output_size
from clipvil.families.grounding.model import content_extent
from clipvil.types import GridFeatures


@dataclass(frozen=True)
class GridFrame:
    """The affine map image pixels ↔ unit frame of one image on one grid."""

    image_hw: tuple[int, int]  # (H, W) of the original image, pixels
    scale: tuple[float, float]  # (sx, sy): prepared pixels per image pixel
    offset: tuple[float, float]  # (ox, oy): prepared pixels cut at the left / top (center crop), else 0
    span: tuple[float, float]  # (span_x, span_y): prepared pixels the real cells cover

    def to_unit(self, box_xywh: Sequence[float]) -> tuple[float, float, float, float]:
        """A COCO [x, y, w, h] image box → unit-frame xyxy, clipped to [0, 1]."""
        x, y, w, h = (float(v) for v in box_xywh)
        (sx, sy), (ox, oy), (px, py) = self.scale, self.offset, self.span
        x0, y0 = (x * sx - ox) / px, (y * sy - oy) / py
        x1, y1 = ((x + w) * sx - ox) / px, ((y + h) * sy - oy) / py
        return (_clip(x0), _clip(y0), _clip(x1), _clip(y1))

    def to_pixels(self, xyxy: Sequence[float]) -> tuple[float, float, float, float]:
        """A unit-frame xyxy box → COCO [x, y, w, h] in image pixels, clipped to the image."""
        (sx, sy), (ox, oy), (px, py) = self.scale, self.offset, self.span
        height, width = self.image_hw
        x0 = min(max((xyxy[0] * px + ox) / sx, 0.0), width)
        y0 = min(max((xyxy[1] * py + oy) / sy, 0.0), height)
        x1 = min(max((xyxy[2] * px + ox) / sx, x0), width)
        y1 = min(max((xyxy[3] * py + oy) / sy, y0), height)
        return (x0, y0, x1 - x0, y1 - y0)

    def covered(self) -> tuple[float, float, float, float]:
        """The part of the image (COCO [x, y, w, h], pixels) that the real cells cover."""
        return self.to_pixels((0.0, 0.0, 1.0, 1.0))

    def visible(self, box_xywh: Sequence[float]) -> float:
        """The fraction of the box's area that the grid covers (1 unless a crop or the grid's edge cuts it)."""
        x, y, w, h = (float(v) for v in box_xywh)
        if w <= 0 or h <= 0:
            return 1.0
        cx, cy, cw, ch = self.covered()
        iw = max(0.0, min(x + w, cx + cw) - max(x, cx))
        ih = max(0.0, min(y + h, cy + ch) - max(y, cy))
        return iw * ih / (w * h)


def _clip(v: float) -> float:
    return min(max(v, 0.0), 1.0)


def native_size(provenance: Mapping[str, Any]) -> int:
    """The square input size of a store made with the 'native' preset (from its provenance's input_size)."""
    text = str(provenance.get("input_size", ""))
    head = text.split(" ")[0].split("x")[0]
    if not head.isdigit():
        raise ValueError(f"feature provenance: cannot read the input size from input_size={text!r}")
    return int(head)


def grid_frame(
    provenance: Mapping[str, Any], image_hw: tuple[int, int], extent: tuple[int, int]
) -> GridFrame:
    """The frame of an image of (H, W) pixels on a grid of `extent` = (rows, cols) real cells, made with the
    preset and stride a feature store's `provenance` names."""
    for key in ("preset", "stride"):
        if key not in provenance:
            raise KeyError(f"feature provenance has no {key!r} (made by an older clipvil?)")
    preset = get_preset(str(provenance["preset"]), provenance.get("resize") or None)
    stride = int(provenance["stride"])
    height, width = int(image_hw[0]), int(image_hw[1])
    if height <= 0 or width <= 0:
        raise ValueError(f"grid_frame: image size must be positive, got {image_hw}")
    native = native_size(provenance) if preset.size is None else 0
    out_h, out_w = output_size(preset, (height, width), native)
    offset = (0.0, 0.0)
    if preset.mode == "resize":
        scale = (out_w / width, out_h / height)
    elif preset.mode == "crop":  # as preprocess.prepare: shorter side to the crop, then torchvision's center_crop
        s = out_h / min(height, width)
        new_h, new_w = max(out_h, round(height * s)), max(out_w, round(width * s))
        scale = (new_w / width, new_h / height)
        offset = (float(round((new_w - out_w) / 2.0)), float(round((new_h - out_h) / 2.0)))
    else:  # pad: fit inside, top-left
        assert preset.size is not None and preset.max_long is not None
        new_h, new_w = fit_inside((height, width), preset.size[0], preset.max_long)
        scale = (new_w / width, new_h / height)
    rows, cols = max(1, int(extent[0])), max(1, int(extent[1]))
    return GridFrame((height, width), scale, offset, (float(cols * stride), float(rows * stride)))


def crops_borders(provenance: Mapping[str, Any]) -> bool:
    """Whether the store's preset center-crops (cutting the borders of non-square images)."""
    return get_preset(str(provenance["preset"]), provenance.get("resize") or None).mode == "crop"


def frame_of(provenance: dict[str, Any], image_hw: tuple[int, int], grid: GridFeatures) -> GridFrame:
    """The frame of the first image of `grid` (made with the store's preset) of size image_hw."""
    rows, cols = content_extent(grid.mask[:1], grid.hw)[0].tolist()
    return grid_frame(provenance, image_hw, (rows, cols))
