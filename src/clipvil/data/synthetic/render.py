"""Pixels of a scene: numpy background, PIL shapes drawn at twice the size and box-filtered down
(anti-aliased edges), then mild Gaussian pixel noise. Deterministic in (scene, difficulty, rng)."""

from __future__ import annotations

import math
from statistics import NormalDist

import numpy as np
from PIL import Image, ImageDraw

from clipvil.data.synthetic.scene import COLORS, Background, Scene, outline

_SUPERSAMPLE = 2
# Gaussian noise by table look-up: 256 equal-probability quantiles of N(0, 1), indexed by random bytes
# (five times faster than drawing normals, and indistinguishable at these noise levels).
_GAUSS = np.array([NormalDist().inv_cdf((i + 0.5) / 256) for i in range(256)], np.float32)


def paint_background(bg: Background, width: int, height: int, rng: np.random.Generator) -> np.ndarray:
    """The backdrop as float32 [H, W, 3] in 0..255 (before the shapes and the noise)."""
    xs = np.arange(width, dtype=np.float32)[None, :]  # [1, W]
    ys = np.arange(height, dtype=np.float32)[:, None]  # [H, 1]
    a = math.radians(bg.angle)
    proj = xs * math.cos(a) + ys * math.sin(a)  # [H, W] distance along the pattern direction
    base = np.asarray(bg.base, np.float32)  # [3]
    if bg.kind == "gradient":
        t = (proj - proj.min()) / max(float(proj.max() - proj.min()), 1.0)  # [H, W] in 0..1
        img = base * (1 - t[..., None]) + np.asarray(bg.second, np.float32) * t[..., None]  # [H, W, 3]
    else:
        img = np.empty((height, width, 3), np.float32)  # [H, W, 3]
        img[:] = base
    if bg.kind == "stripes":
        img += bg.amplitude * np.sin(2 * math.pi * proj / bg.period)[..., None]  # [H, W, 3]
    elif bg.kind == "checker":
        cells = (np.floor(xs / bg.period) + np.floor(ys / bg.period)) % 2  # [H, W] in {0, 1} (broadcast)
        img += bg.amplitude * (2 * cells - 1)[..., None]  # [H, W, 3]
    elif bg.kind == "mottled":
        coarse = Image.fromarray(rng.standard_normal((5, 5)).astype(np.float32), mode="F")
        blobs = np.asarray(coarse.resize((width, height), Image.Resampling.BILINEAR))  # [H, W]
        img += bg.amplitude * blobs[..., None]  # [H, W, 3]
    return img


def _fill(color: str, difficulty: float, rng: np.random.Generator) -> tuple[int, int, int]:
    """The named colour with a small per-object jitter (at most +-20 per channel at difficulty 1)."""
    spread = 4 + 16 * difficulty
    rgb = np.asarray(COLORS[color], np.float32) + rng.uniform(-spread, spread, 3)  # [3]
    r, g, b = np.clip(np.round(rgb), 0, 255).astype(int).tolist()
    return (r, g, b)


def render(scene: Scene, difficulty: float, rng: np.random.Generator) -> Image.Image:
    """The RGB image of `scene`."""
    w, h, k = scene.width, scene.height, _SUPERSAMPLE
    backdrop = np.clip(paint_background(scene.background, w, h, rng), 0, 255).astype(np.uint8)  # [H, W, 3]
    canvas = Image.fromarray(backdrop).resize((w * k, h * k), Image.Resampling.NEAREST)
    draw = ImageDraw.Draw(canvas)
    for obj in scene.objects:
        draw.polygon([(x * k, y * k) for x, y in outline(obj)], fill=_fill(obj.color, difficulty, rng))
    small = np.asarray(canvas.reduce(k)).astype(np.int16)  # [H, W, 3]
    table = np.round(_GAUSS * (1.5 + 6.0 * difficulty)).astype(np.int16)  # [256] noise levels
    noisy = small + table[rng.integers(0, 256, small.shape, dtype=np.uint8)]  # [H, W, 3]
    return Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8))
