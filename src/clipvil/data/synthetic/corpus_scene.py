"""Scenes of the pre-training corpus ("the web"): far more varied than the downstream worlds, as plain records.

The downstream worlds (`make-data`, `make-nav-world`) draw 6 shapes x 8 colours, solid fills, no overlap. The
corpus draws from a wider world — 12 shapes, 12 colours, four fills, sizes on a continuum, overlapping objects
(the later drawn in front), clutter strokes, seven backdrop kinds and lighting — so that a tower pre-trained on
it meets the downstream scenes as a user's CLIP meets COCO: as a narrow slice of what it has seen. Some
downstream combinations are never shown at all (`HELD_OUT`: one shape per downstream colour), so a downstream
test also asks whether the tower composes a colour and a shape it saw only apart.

A scene is a pure function of (seed, image id): `sample_corpus_scene` draws it from the image's own stream.
"""

from __future__ import annotations

import colorsys
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from clipvil.data.synthetic.scene import COLORS, SHAPES, stream

EXTRA_SHAPES: tuple[str, ...] = ("hexagon", "pentagon", "ring", "arrow", "semicircle", "oval")
CORPUS_SHAPES: tuple[str, ...] = SHAPES + EXTRA_SHAPES  # 12: the downstream 6 first
EXTRA_COLORS: dict[str, tuple[int, int, int]] = {
    "pink": (240, 130, 190),
    "brown": (130, 80, 40),
    "gray": (128, 128, 128),
    "cyan": (40, 200, 210),
}
CORPUS_COLORS: dict[str, tuple[int, int, int]] = {**COLORS, **EXTRA_COLORS}  # 12: the downstream 8 first
FILLS: tuple[str, ...] = ("solid", "striped", "dotted", "outlined")
BACKDROPS: dict[str, str] = {  # kind -> the word a caption uses
    "solid": "plain",
    "gradient": "shaded",
    "stripes": "striped",
    "checker": "checkered",
    "mottled": "mottled",
    "noise": "grainy",
    "blobs": "blotchy",
}
# Downstream (shape, colour) pairs the corpus never shows: one per downstream colour, every shape at least once.
HELD_OUT: frozenset[tuple[str, str]] = frozenset({
    ("circle", "red"), ("square", "orange"), ("triangle", "yellow"), ("diamond", "green"),
    ("star", "blue"), ("cross", "purple"), ("circle", "white"), ("square", "black"),
})
_MIN_R, _MAX_R = 0.05, 0.2  # object radius as a fraction of the shorter image side


def size_word(radius_frac: float) -> str:
    """'small' | 'medium' | 'large' for a radius given as a fraction of the shorter side."""
    return "small" if radius_frac < 0.09 else "medium" if radius_frac < 0.14 else "large"


@dataclass(frozen=True)
class CorpusObject:
    """One drawn object; positions in pixels (origin top-left, y down), drawn in list order (later in front)."""

    shape: str  # one of CORPUS_SHAPES
    color: str  # one of CORPUS_COLORS
    fill: str  # one of FILLS
    x: float
    y: float
    radius: float  # nominal radius in pixels
    rotation: float  # degrees, counter-clockwise
    occluded: bool  # a later object covers part of it
    size: str  # 'small' | 'medium' | 'large' (size_word of radius / shorter side)

    def to_json(self) -> dict[str, Any]:
        return {"shape": self.shape, "color": self.color, "fill": self.fill, "x": round(self.x, 1),
                "y": round(self.y, 1), "radius": round(self.radius, 1), "rotation": round(self.rotation, 1),
                "occluded": self.occluded, "size": self.size}


@dataclass(frozen=True)
class Lighting:
    """Global photometric changes applied after drawing."""

    brightness: float  # multiplicative, ~0.65..1.3
    contrast: float  # around the mean, ~0.7..1.25
    cast: tuple[float, float, float]  # per-channel gains, ~0.9..1.1
    light_angle: float  # degrees: direction a linear light falloff comes from
    falloff: float  # 0 (flat) .. 0.45 (the dark side is 45 % darker)
    blur: float  # Gaussian blur radius in pixels (0: none)

    @property
    def word(self) -> str:
        """The caption's word for the light."""
        level = self.brightness * (1 - self.falloff / 2)
        return "dim" if level < 0.8 else "bright" if level > 1.15 else "soft"


@dataclass(frozen=True)
class CorpusScene:
    """One corpus image's content: what its caption and its category label are derived from."""

    image_id: int
    width: int
    height: int
    backdrop: str  # a key of BACKDROPS
    backdrop_base: tuple[int, int, int]
    backdrop_second: tuple[int, int, int]
    backdrop_angle: float
    backdrop_period: float
    backdrop_amplitude: float
    clutter: int  # thin strokes and specks drawn behind the objects
    objects: tuple[CorpusObject, ...]
    lighting: Lighting

    @property
    def category(self) -> str:
        """The ImageNet-style label: the shape of the largest object (ties: the one drawn last, in front)."""
        return max(reversed(self.objects), key=lambda o: o.radius).shape

    def to_json(self) -> dict[str, Any]:
        return {"image_id": self.image_id, "width": self.width, "height": self.height, "backdrop": self.backdrop,
                "clutter": self.clutter, "category": self.category, "lighting": self.lighting.word,
                "objects": [o.to_json() for o in self.objects]}


def _backdrop_color(rng: np.random.Generator) -> tuple[int, int, int]:
    """A backdrop tone: mostly desaturated mid-tones, sometimes a light, dark or mildly coloured one."""
    sat = rng.uniform(0.0, 0.2) if rng.random() < 0.8 else rng.uniform(0.2, 0.4)
    val = (rng.uniform(0.45, 0.7) if rng.random() < 0.75
           else rng.choice([rng.uniform(0.2, 0.35), rng.uniform(0.8, 0.92)]))
    r, g, b = colorsys.hsv_to_rgb(rng.random(), sat, float(val))
    return (round(r * 255), round(g * 255), round(b * 255))


def _attributes(rng: np.random.Generator) -> tuple[str, str]:
    """A (shape, colour) pair outside HELD_OUT."""
    while True:
        pair = (str(rng.choice(CORPUS_SHAPES)), str(rng.choice(list(CORPUS_COLORS))))
        if pair not in HELD_OUT:
            return pair


def _overlap(a: tuple[float, float, float], b: tuple[float, float, float]) -> float:
    """How deep circle b reaches into circle a, as a fraction of a's radius (0: apart)."""
    depth = a[2] + b[2] - math.hypot(a[0] - b[0], a[1] - b[1])
    return max(0.0, depth) / a[2]


def _place(n: int, width: int, height: int, rng: np.random.Generator) -> list[tuple[float, float, float]]:
    """(x, y, r) per object: overlaps allowed up to half a radius (so every object stays recognisable)."""
    side = min(width, height)
    placed: list[tuple[float, float, float]] = []
    for _ in range(n):
        for _attempt in range(40):
            r = float(rng.uniform(_MIN_R, _MAX_R) * side)
            if _attempt > 20:
                r = float(rng.uniform(_MIN_R, 0.09) * side)
            x, y = float(rng.uniform(r, width - r)), float(rng.uniform(r, height - r))
            if all(_overlap(p, (x, y, r)) < 0.5 and _overlap((x, y, r), p) < 0.5 for p in placed):
                placed.append((x, y, r))
                break
    return placed


def sample_lighting(rng: np.random.Generator) -> Lighting:
    """Half the images in neutral light, the rest lit, cast and sometimes blurred."""
    if rng.random() < 0.5:
        return Lighting(1.0, 1.0, (1.0, 1.0, 1.0), 0.0, 0.0, 0.0)
    return Lighting(brightness=float(rng.uniform(0.65, 1.3)), contrast=float(rng.uniform(0.7, 1.25)),
                    cast=tuple(float(v) for v in rng.uniform(0.9, 1.1, 3)),  # type: ignore[arg-type]
                    light_angle=float(rng.uniform(0, 360)), falloff=float(rng.uniform(0, 0.45)),
                    blur=float(rng.choice([0.0, 0.0, 0.6, 1.0])))


def sample_corpus_scene(seed: int, image_id: int, width: int = 160, height: int = 160) -> CorpusScene:
    """The scene of corpus image `image_id` (deterministic in (seed, image_id, size))."""
    rng = stream(seed, image_id, "corpus")
    kind = str(rng.choice(list(BACKDROPS), p=[0.2, 0.2, 0.12, 0.12, 0.12, 0.12, 0.12]))
    base = _backdrop_color(rng)
    second = _backdrop_color(rng) if kind == "gradient" else base
    side = min(width, height)
    n = int(rng.choice([1, 2, 3, 4, 5, 6, 7], p=[0.1, 0.16, 0.2, 0.2, 0.16, 0.1, 0.08]))
    spots = _place(n, width, height, rng)
    objs: list[CorpusObject] = []
    for k, (x, y, r) in enumerate(spots):
        shape, color = _attributes(rng)
        fill = str(rng.choice(FILLS, p=[0.7, 0.1, 0.1, 0.1]))
        rot = 0.0 if shape in ("circle", "ring") else float(rng.uniform(-25, 25))
        occluded = any(_overlap((x, y, r), later) > 0.05 for later in spots[k + 1:])
        objs.append(CorpusObject(shape, color, fill, x, y, r, rot, occluded, size_word(r / side)))
    return CorpusScene(
        image_id=image_id, width=width, height=height, backdrop=kind, backdrop_base=base, backdrop_second=second,
        backdrop_angle=float(rng.uniform(0, 180)), backdrop_period=float(rng.uniform(0.05, 0.18) * side),
        backdrop_amplitude=float(rng.uniform(6, 30)) if kind != "solid" else 0.0,
        clutter=int(rng.choice([0, 0, 0, 2, 5, 9])), objects=tuple(objs), lighting=sample_lighting(rng))


__all__ = ["BACKDROPS", "CORPUS_COLORS", "CORPUS_SHAPES", "EXTRA_COLORS", "EXTRA_SHAPES", "FILLS", "HELD_OUT",
           "CorpusObject", "CorpusScene", "Lighting", "sample_corpus_scene", "size_word"]
