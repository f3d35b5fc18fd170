"""Pixels of a corpus scene: backdrop, clutter strokes, filled / striped / dotted / outlined shapes drawn back to
front at twice the size and box-filtered down, then lighting (falloff, brightness, contrast, colour cast, blur)
and sensor noise. The downstream six shapes have exactly the downstream world's outlines."""

from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from clipvil.data.synthetic.corpus_scene import CORPUS_COLORS, CorpusObject, CorpusScene
from clipvil.data.synthetic.render import _GAUSS, paint_background
from clipvil.data.synthetic.scene import Background, unit_outline

_K = 2  # supersampling factor


def _polar(n: int, radii: list[float], start_deg: float, squash: float = 1.0) -> list[tuple[float, float]]:
    pts = []
    for k in range(n):
        a = math.radians(start_deg + 360.0 * k / n)
        r = radii[k % len(radii)]
        pts.append((r * math.cos(a), -r * math.sin(a) * squash))
    return pts


_EXTRA_UNITS: dict[str, list[tuple[float, float]]] = {
    "hexagon": _polar(6, [1.0], 0.0),
    "pentagon": _polar(5, [1.05], 90.0),
    "ring": _polar(48, [1.0], 0.0),  # the hole is cut out when drawing
    "arrow": [(-1.0, -0.3), (0.2, -0.3), (0.2, -0.75), (1.0, 0.0), (0.2, 0.75), (0.2, 0.3), (-1.0, 0.3)],
    "semicircle": [(math.cos(math.radians(a)), -math.sin(math.radians(a)) + 0.4) for a in range(0, 181, 6)],
    "oval": _polar(48, [1.05], 0.0, squash=0.55),
}


def corpus_outline(obj: CorpusObject, scale: float = 1.0) -> list[tuple[float, float]]:
    """The object's polygon in (scaled) image pixels."""
    unit = _EXTRA_UNITS.get(obj.shape) or unit_outline(obj.shape)
    c, s = math.cos(math.radians(obj.rotation)), math.sin(math.radians(obj.rotation))
    return [(scale * (obj.x + obj.radius * (u * c + v * s)), scale * (obj.y + obj.radius * (-u * s + v * c)))
            for u, v in unit]


def _shade(rgb: np.ndarray, amount: float) -> tuple[int, int, int]:
    """`rgb` moved towards black (amount < 0) or white (amount > 0)."""
    target = 255.0 if amount > 0 else 0.0
    out = rgb + abs(amount) * (target - rgb)  # [3]
    r, g, b = np.clip(np.round(out), 0, 255).astype(int).tolist()
    return (r, g, b)


def _object_mask(obj: CorpusObject, size: tuple[int, int]) -> Image.Image:
    mask = Image.new("L", size, 0)
    draw = ImageDraw.Draw(mask)
    draw.polygon(corpus_outline(obj, _K), fill=255)
    if obj.shape == "ring":
        r = obj.radius * 0.55 * _K
        draw.ellipse([obj.x * _K - r, obj.y * _K - r, obj.x * _K + r, obj.y * _K + r], fill=0)
    if obj.fill == "outlined":
        inner = Image.new("L", size, 0)
        shrunk = CorpusObject(obj.shape, obj.color, obj.fill, obj.x, obj.y, obj.radius * 0.72, obj.rotation,
                              obj.occluded, obj.size)
        ImageDraw.Draw(inner).polygon(corpus_outline(shrunk, _K), fill=255)
        mask = Image.fromarray(np.minimum(np.asarray(mask), 255 - np.asarray(inner)))
    return mask


def _texture(obj: CorpusObject, base: np.ndarray, size: tuple[int, int], rng: np.random.Generator) -> Image.Image:
    """The object's paint over the whole canvas (masked by the caller): solid, stripes or dots."""
    paint = Image.new("RGB", size, _shade(base, 0.0))
    if obj.fill in ("striped", "dotted"):
        draw = ImageDraw.Draw(paint)
        other = _shade(base, 0.55 if base.mean() < 140 else -0.55)
        period = max(4.0, obj.radius * _K * 0.45)
        if obj.fill == "striped":
            a = math.radians(float(rng.uniform(0, 180)))
            dx, dy = math.cos(a), math.sin(a)
            cx, cy, reach = obj.x * _K, obj.y * _K, obj.radius * _K * 1.3
            t = -reach
            while t < reach:
                px, py = cx + dx * t, cy + dy * t
                draw.line([(px - dy * reach, py + dx * reach), (px + dy * reach, py - dx * reach)], fill=other,
                          width=max(1, int(period / 2)))
                t += period
        else:
            dot = period * 0.28
            cx, cy, reach = obj.x * _K, obj.y * _K, obj.radius * _K
            for gx in np.arange(cx - reach, cx + reach, period):
                for gy in np.arange(cy - reach, cy + reach, period):
                    draw.ellipse([gx - dot, gy - dot, gx + dot, gy + dot], fill=other)
    return paint


def _clutter(draw: ImageDraw.ImageDraw, n: int, size: tuple[int, int], rng: np.random.Generator) -> None:
    """Thin strokes and specks in muted tones (behind the objects)."""
    w, h = size
    for _ in range(n):
        tone = tuple(int(v) for v in rng.integers(60, 200, 3))
        if rng.random() < 0.6:
            pts = [(float(rng.uniform(0, w)), float(rng.uniform(0, h))) for _ in range(int(rng.integers(2, 5)))]
            draw.line(pts, fill=tone, width=int(rng.integers(1, 4)))
        else:
            x, y, r = float(rng.uniform(0, w)), float(rng.uniform(0, h)), float(rng.uniform(1, 3.5))
            draw.ellipse([x - r, y - r, x + r, y + r], fill=tone)


def _light(img: np.ndarray, scene: CorpusScene) -> np.ndarray:
    """Falloff, brightness, contrast and colour cast on float [H, W, 3]."""
    li = scene.lighting
    if li.falloff > 0:
        h, w = img.shape[:2]
        a = math.radians(li.light_angle)
        xs = np.linspace(-1, 1, w, dtype=np.float32)[None, :]  # [1, W]
        ys = np.linspace(-1, 1, h, dtype=np.float32)[:, None]  # [H, 1]
        t = (xs * math.cos(a) + ys * math.sin(a) + 1.5) / 3.0  # [H, W] 0..1 away from the light
        img = img * (1 - li.falloff * t)[..., None]  # [H, W, 3]
    mean = img.mean()
    img = (img - mean) * li.contrast + mean  # [H, W, 3]
    return img * li.brightness * np.asarray(li.cast, np.float32)  # [H, W, 3]


def render_corpus(scene: CorpusScene, rng: np.random.Generator) -> Image.Image:
    """The RGB image of a corpus scene."""
    w, h = scene.width, scene.height
    bg = Background(kind=scene.backdrop if scene.backdrop in ("solid", "gradient", "stripes", "checker", "mottled")
                    else "solid", base=scene.backdrop_base, second=scene.backdrop_second,
                    angle=scene.backdrop_angle, period=scene.backdrop_period, amplitude=scene.backdrop_amplitude)
    backdrop = paint_background(bg, w, h, rng)  # [H, W, 3]
    if scene.backdrop == "noise":
        backdrop += rng.normal(0, scene.backdrop_amplitude * 0.6, (h, w, 1)).astype(np.float32)  # [H, W, 3]
    elif scene.backdrop == "blobs":
        coarse = rng.normal(0, 1, (4, 4, 3)).astype(np.float32)  # [4, 4, 3]
        up = np.stack([np.asarray(Image.fromarray(coarse[..., c], mode="F").resize((w, h), Image.Resampling.BICUBIC))
                       for c in range(3)], axis=-1)  # [H, W, 3]
        backdrop += scene.backdrop_amplitude * up
    size = (w * _K, h * _K)
    canvas = Image.fromarray(np.clip(backdrop, 0, 255).astype(np.uint8)).resize(size, Image.Resampling.NEAREST)
    _clutter(ImageDraw.Draw(canvas), scene.clutter, size, rng)
    for obj in scene.objects:
        spread = 18.0
        base = np.asarray(CORPUS_COLORS[obj.color], np.float32) + rng.uniform(-spread, spread, 3)  # [3]
        base = np.clip(base, 0, 255)
        canvas.paste(_texture(obj, base, size, rng), (0, 0), _object_mask(obj, size))
    small = canvas.reduce(_K)
    if scene.lighting.blur > 0:
        small = small.filter(ImageFilter.GaussianBlur(scene.lighting.blur))
    lit = _light(np.asarray(small, np.float32), scene)  # [H, W, 3]
    noise = _GAUSS[rng.integers(0, 256, lit.shape, dtype=np.uint8)] * float(rng.uniform(1.5, 7.0))  # [H, W, 3]
    return Image.fromarray(np.clip(np.round(lit + noise), 0, 255).astype(np.uint8))


__all__ = ["corpus_outline", "render_corpus"]
