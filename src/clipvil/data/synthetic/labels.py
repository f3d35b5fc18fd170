"""ImageNet-style labels of the synthetic world: which shapes and colours each image shows, as multi-label
targets read from the world's scene files (``scenes/scenes_<coco split>.json``, the ground truth).

Label spaces (`label_names`), all in a fixed order:

- ``shape``: the 6 shapes (circle, square, triangle, diamond, star, cross);
- ``color``: the 8 colours (red, orange, yellow, green, blue, purple, white, black);
- ``attribute``: the 6 shapes then the 8 colours (14 labels: an image has each shape and colour it shows);
- ``object``: the 48 "colour shape" pairs ("red circle", "red square", ..., "black cross").

An image's target is multi-hot: 1 for every label at least one of its objects carries (train with BCE;
score with mAP or per-label accuracy). The readers return `clipvil.data.image_folder.LabelledImages`, the
structure `read_image_folder` gives for real image folders, so one classifier task serves both.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from clipvil.data.image_folder import LabelledImages
from clipvil.data.synthetic.manifest import Manifest
from clipvil.data.synthetic.scene import COLORS, SHAPES
from clipvil.data.validate import PathLike, error, expect_type, get_field, load_json

LABEL_KINDS: tuple[str, ...] = ("attribute", "shape", "color", "object")


def label_names(kind: str = "attribute") -> tuple[str, ...]:
    """The labels of one label space, in target order."""
    colors = tuple(COLORS)
    if kind == "shape":
        return SHAPES
    if kind == "color":
        return colors
    if kind == "attribute":
        return SHAPES + colors
    if kind == "object":
        return tuple(f"{c} {s}" for c in colors for s in SHAPES)
    raise ValueError(f"unknown label kind {kind!r}; expected one of {LABEL_KINDS}")


def _object_labels(obj: Any, kind: str, path: Path, where: str) -> list[str]:
    shape = get_field(obj, "shape", path, where, str)
    color = get_field(obj, "color", path, where, str)
    if shape not in SHAPES:
        raise error(path, where, f"unknown shape {shape!r} (expected one of {SHAPES})")
    if color not in COLORS:
        raise error(path, where, f"unknown colour {color!r} (expected one of {tuple(COLORS)})")
    return {"shape": [shape], "color": [color], "attribute": [shape, color], "object": [f"{color} {shape}"]}[
        kind
    ]


def scene_targets(scene: Mapping[str, Any], kind: str, path: Path) -> np.ndarray:
    """[C] multi-hot target of one scene record (as the scene file holds it)."""
    names = label_names(kind)
    index = {n: i for i, n in enumerate(names)}
    image_id = get_field(scene, "image_id", path, None, int)
    where = f"image {image_id}"
    objects = get_field(scene, "objects", path, where, list)
    if not objects:
        raise error(path, where, "scene without objects")
    target = np.zeros(len(names), dtype=np.float32)  # [C]
    for k, obj in enumerate(objects):
        for label in _object_labels(obj, kind, path, f"{where}: objects[{k}]"):
            target[index[label]] = 1.0
    return target


def read_scene_labels(world: Manifest | PathLike, split: str, kind: str = "attribute") -> LabelledImages:
    """The images of one split of a synthetic world with their multi-hot targets [N, C], in id order.

    world: the `Manifest` `make_data` returned, or the world's directory.
    """
    manifest = world if isinstance(world, Manifest) else Manifest.load(world)
    names = label_names(kind)
    path = manifest.path("scenes", split)
    image_dir = manifest.path("coco_images", split)
    scenes = get_field(
        expect_type(load_json(path), dict, path, None, "a scene file"), "scenes", path, None, list
    )
    images: list[Path] = []
    rows: list[np.ndarray] = []
    for i, scene in enumerate(scenes):
        expect_type(scene, dict, path, f"scenes[{i}]", "a scene")
        row = scene_targets(scene, kind, path)
        where = f"image {scene['image_id']}"
        if get_field(scene, "split", path, where, str) != split:
            raise error(path, where, f"scene of split {scene['split']!r} in the {split!r} scene file")
        images.append(image_dir / get_field(scene, "file_name", path, where, str))
        rows.append(row)
    if not rows:
        raise error(path, None, "no scenes")
    return LabelledImages(path, names, images, np.stack(rows))  # targets [N, C]


__all__ = ["LABEL_KINDS", "label_names", "read_scene_labels", "scene_targets"]
