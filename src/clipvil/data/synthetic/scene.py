"""Scenes of the synthetic world: coloured shapes on a background, as plain records (no pixels).

A scene is sampled from its own random stream, so any image can be re-made alone. Objects never overlap
(their circumscribed circles keep a gap), so every question about them has one clear answer.
"""

from __future__ import annotations

import colorsys
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from clipvil.data.synthetic.spec import WorldSpec

SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "diamond", "star", "cross")
# Eight colours far apart in RGB and in hue; backgrounds are desaturated mid-tones, so all eight stand out.
COLORS: dict[str, tuple[int, int, int]] = {
    "red": (215, 40, 40),
    "orange": (240, 140, 30),
    "yellow": (240, 215, 40),
    "green": (50, 165, 70),
    "blue": (40, 90, 215),
    "purple": (135, 60, 185),
    "white": (245, 245, 245),
    "black": (20, 20, 20),
}
SIZES: tuple[str, ...] = ("small", "large")
# Background patterns and the word a caption uses for each.
BACKGROUNDS: dict[str, str] = {
    "solid": "plain",
    "gradient": "shaded",
    "stripes": "striped",
    "checker": "checkered",
    "mottled": "mottled",
}
_RADIUS = {"small": 0.07, "large": 0.125}  # nominal radius as a fraction of the shorter image side
_EXTENT = 1.12  # every shape fits in a circle of _EXTENT * radius around its centre


@dataclass(frozen=True)
class SceneObject:
    """One shape; positions and sizes in pixels of the final image (origin top-left, y down)."""

    obj_id: int  # unique over the world: image_id * 100 + index in the scene
    shape: str
    color: str
    size: str  # "small" | "large"
    x: float  # centre
    y: float
    radius: float  # nominal radius; the drawn shape fits in a circle of 1.12 * radius
    rotation: float  # degrees, counter-clockwise

    def bbox(self) -> tuple[float, float, float, float]:
        """COCO box [x, y, w, h] of the drawn shape (from its outline)."""
        pts = outline(self)
        xs, ys = [p[0] for p in pts], [p[1] for p in pts]
        return (min(xs), min(ys), max(xs) - min(xs), max(ys) - min(ys))

    def to_json(self) -> dict[str, Any]:
        return {
            "obj_id": self.obj_id,
            "shape": self.shape,
            "color": self.color,
            "size": self.size,
            "x": round(self.x, 2),
            "y": round(self.y, 2),
            "radius": round(self.radius, 2),
            "rotation": round(self.rotation, 2),
            "bbox": [round(v, 2) for v in self.bbox()],
        }


@dataclass(frozen=True)
class Background:
    """How the backdrop is painted (render.py reads it; captions name `kind`)."""

    kind: str  # a key of BACKGROUNDS
    base: tuple[int, int, int]  # RGB, a desaturated mid-tone
    second: tuple[int, int, int]  # gradient end colour (same as base unless kind == "gradient")
    angle: float  # degrees, direction of gradient / stripes
    period: float  # pixels, stripe / checker period
    amplitude: float  # intensity swing of the pattern, 0..255

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "base": list(self.base),
            "second": list(self.second),
            "angle": round(self.angle, 2),
            "period": round(self.period, 2),
            "amplitude": round(self.amplitude, 2),
        }


@dataclass(frozen=True)
class Scene:
    """One image's content: what every question, caption and statement about it is derived from."""

    image_id: int
    split: str  # "train" | "val" | "test"
    width: int
    height: int
    background: Background
    objects: tuple[SceneObject, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "image_id": self.image_id,
            "split": self.split,
            "width": self.width,
            "height": self.height,
            "background": self.background.to_json(),
            "objects": [o.to_json() for o in self.objects],
        }


def outline(obj: SceneObject) -> list[tuple[float, float]]:
    """The shape's polygon in image pixels (a 48-gon for the circle)."""
    unit = _UNIT_SHAPES[obj.shape]
    c, s = math.cos(math.radians(obj.rotation)), math.sin(math.radians(obj.rotation))
    return [(obj.x + obj.radius * (u * c + v * s), obj.y + obj.radius * (-u * s + v * c)) for u, v in unit]


def _polar(n: int, radii: list[float], start_deg: float) -> list[tuple[float, float]]:
    """n points around the origin at the given radii (cycled), starting at `start_deg`, y down."""
    pts = []
    for k in range(n):
        a = math.radians(start_deg + 360.0 * k / n)
        r = radii[k % len(radii)]
        pts.append((r * math.cos(a), -r * math.sin(a)))
    return pts


def _cross(arm: float, half: float) -> list[tuple[float, float]]:
    return [
        (-arm, -half),
        (arm, -half),
        (arm, -arm),
        (half, -arm),
        (half, arm),
        (arm, arm),
        (arm, half),
        (-arm, half),
        (-arm, arm),
        (-half, arm),
        (-half, -arm),
        (-arm, -arm),
    ]


# Unit outlines (radius 1). Areas are kept comparable; the diamond is a narrow rhombus so that a slightly
# rotated square never looks like it.
_UNIT_SHAPES: dict[str, list[tuple[float, float]]] = {
    "circle": _polar(48, [1.0], 0.0),
    "square": [(-0.85, -0.85), (0.85, -0.85), (0.85, 0.85), (-0.85, 0.85)],
    "triangle": _polar(3, [1.12], 90.0),
    "diamond": [(0.0, -1.12), (0.72, 0.0), (0.0, 1.12), (-0.72, 0.0)],
    "star": _polar(10, [1.12, 0.48], 90.0),
    "cross": _cross(0.36, 1.0),
}


def unit_outline(shape: str) -> list[tuple[float, float]]:
    """The outline of `shape` at radius 1 around the origin (y down), as the world draws it."""
    return _UNIT_SHAPES[shape]


def stream(seed: int, image_id: int, name: str) -> np.random.Generator:
    """The random stream `name` of one image: independent of every other image and stream."""
    code = int.from_bytes(name.encode("ascii")[:8].ljust(8, b"\0"), "little")
    return np.random.default_rng([seed, image_id, code])


def _muted_color(rng: np.random.Generator) -> tuple[int, int, int]:
    """A desaturated mid-tone (HSV saturation <= 0.2, value 0.45..0.7)."""
    rgb = colorsys.hsv_to_rgb(rng.random(), rng.uniform(0.0, 0.2), rng.uniform(0.45, 0.7))
    return (round(rgb[0] * 255), round(rgb[1] * 255), round(rgb[2] * 255))


def sample_background(spec: WorldSpec, rng: np.random.Generator) -> Background:
    """Solid or gradient most of the time; textures become likelier (and stronger) with difficulty."""
    d = spec.difficulty
    p_texture = 0.15 + 0.5 * d
    p = [(1 - p_texture) / 2, (1 - p_texture) / 2, p_texture / 3, p_texture / 3, p_texture / 3]
    kind = str(rng.choice(list(BACKGROUNDS), p=p))
    base = _muted_color(rng)
    second = _muted_color(rng) if kind == "gradient" else base
    side = min(spec.width, spec.height)
    return Background(
        kind=kind,
        base=base,
        second=second,
        angle=float(rng.uniform(0, 180)),
        period=float(rng.uniform(0.06, 0.16) * side),
        amplitude=float(8 + 20 * d) if kind != "solid" else 0.0,
    )


def _attributes(n: int, rng: np.random.Generator) -> list[tuple[str, str, str]]:
    """(shape, colour, size) per object. Colours and shapes come from a small per-scene palette, so
    repeats are common (counting and referring need them) while each value stays uniform overall."""
    colors = rng.permutation(list(COLORS))[: rng.integers(2, len(COLORS) + 1)]
    shapes = rng.permutation(list(SHAPES))[: rng.integers(2, len(SHAPES) + 1)]
    return [(str(rng.choice(shapes)), str(rng.choice(colors)), str(rng.choice(SIZES))) for _ in range(n)]


def _place(
    spec: WorldSpec, sizes: list[str], rng: np.random.Generator
) -> list[tuple[float, float, float]] | None:
    """Non-overlapping (x, y, radius) per object, or None when the rejection sampler gives up."""
    side = min(spec.width, spec.height)
    jitter = 0.004 + 0.01 * spec.difficulty
    gap = 0.02 * side
    placed: list[tuple[float, float, float]] = []
    for size in sizes:
        r = (_RADIUS[size] + rng.uniform(-jitter, jitter)) * side
        ext = r * _EXTENT
        for _ in range(60):
            x = rng.uniform(ext + 2, spec.width - ext - 2)
            y = rng.uniform(ext + 2, spec.height - ext - 2)
            if all(math.hypot(x - px, y - py) >= ext + pr * _EXTENT + gap for px, py, pr in placed):
                placed.append((x, y, r))
                break
        else:
            return None
    return placed


def sample_scene(spec: WorldSpec, image_id: int) -> Scene:
    """The scene of image `image_id` (deterministic in (spec, image_id))."""
    rng = stream(spec.seed, image_id, "scene")
    background = sample_background(spec, rng)
    n = int(rng.integers(spec.min_objects, spec.max_objects + 1))
    max_rot = 5 + 10 * spec.difficulty
    for attempt in range(100):
        attrs = _attributes(n, rng)
        if attempt >= 50:  # a crowded canvas: all-small objects fit far more easily
            attrs = [(shape, color, "small") for shape, color, _ in attrs]
        spots = _place(spec, [a[2] for a in attrs], rng)
        if spots is not None:
            break
    else:
        raise RuntimeError(f"image {image_id}: cannot place {n} objects on {spec.width}x{spec.height}")
    objects = tuple(
        SceneObject(
            obj_id=image_id * 100 + k,
            shape=shape,
            color=color,
            size=size,
            x=float(x),
            y=float(y),
            radius=float(r),
            rotation=float(rng.uniform(-max_rot, max_rot)) if shape != "circle" else 0.0,
        )
        for k, ((shape, color, size), (x, y, r)) in enumerate(zip(attrs, spots, strict=True))
    )
    return Scene(image_id, spec.split_of(image_id), spec.width, spec.height, background, objects)
