"""How well a relevance map (Grad-CAM, ...) points at the object: the pointing game and the energy in the box.

A map is a 2-D array [h, w] that spans the whole image of size `image_hw` = (H, W) pixels: at image
resolution (h, w) == (H, W), or coarser (a grid map, e.g. 7×7 over a 224×224 image), where cell (r, c)
covers x in [c·W/w, (c+1)·W/w) and y in [r·H/h, (r+1)·H/h) with a constant value. (Crop a padded input's
grid to its content cells first.) Boxes are COCO [x, y, w, h] in pixels of that image.

- pointing game (Zhang et al., "Top-down neural attention by excitation backprop", 2016): a hit when the
  map's maximum lies inside the box, up to `tolerance` pixels (they used 15). The maximum's location is the
  centre of the maximal cell (the first in row-major order on ties); a constant map has no maximum and
  misses.
- energy in the box: the share of the map's (non-negative) mass inside the box, each cell counting with the
  fraction of its area the box covers — exact for the piecewise-constant map described above. An all-zero
  map has share 0.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

Box = Sequence[float]


def _check(heat: np.ndarray, box_xywh: Box, image_hw: tuple[int, int], what: str) -> tuple[np.ndarray, np.ndarray]:
    m = np.asarray(heat, dtype=np.float64)
    if m.ndim != 2 or m.size == 0:
        raise ValueError(f"{what}: the map must be a non-empty 2-D array [h, w], got shape {m.shape}")
    if not np.isfinite(m).all():
        raise ValueError(f"{what}: the map has non-finite values")
    if len(image_hw) != 2 or min(image_hw) <= 0:
        raise ValueError(f"{what}: image_hw must be a positive (H, W), got {image_hw}")
    box = np.asarray(box_xywh, dtype=np.float64)
    if box.shape != (4,) or not np.isfinite(box).all() or (box[2:] < 0).any():
        raise ValueError(f"{what}: box must be [x, y, w, h] with w, h >= 0, got {list(box_xywh)}")
    return m, box


def pointing_game(
    heat: np.ndarray, box_xywh: Box, image_hw: tuple[int, int], tolerance: float = 0.0
) -> bool:
    """True when the map's maximum (its cell's centre, in image pixels) is within `tolerance` px of the box."""
    m, (x, y, bw, bh) = _check(heat, box_xywh, image_hw, "pointing_game")
    if m.max() == m.min():
        return False
    r, c = np.unravel_index(int(np.argmax(m)), m.shape)
    h, w = m.shape
    px, py = (c + 0.5) * image_hw[1] / w, (r + 0.5) * image_hw[0] / h
    dx = max(x - px, 0.0, px - (x + bw))
    dy = max(y - py, 0.0, py - (y + bh))
    return bool(np.hypot(dx, dy) <= tolerance)


def _overlap(n: int, size: float, lo: float, hi: float) -> np.ndarray:
    """[n] fraction of each of n equal cells over [0, size) that [lo, hi] covers."""
    edges = np.arange(n + 1) * (size / n)
    covered = np.clip(np.minimum(edges[1:], hi) - np.maximum(edges[:-1], lo), 0.0, None)
    return covered / (size / n)


def energy_in_box(heat: np.ndarray, box_xywh: Box, image_hw: tuple[int, int]) -> float:
    """Share in [0, 1] of the map's mass (negative values count as 0) that falls inside the box."""
    m, (x, y, bw, bh) = _check(heat, box_xywh, image_hw, "energy_in_box")
    m = np.clip(m, 0.0, None)
    total = m.sum()
    if total == 0:
        return 0.0
    h, w = m.shape
    inside = np.outer(_overlap(h, image_hw[0], y, y + bh), _overlap(w, image_hw[1], x, x + bw))  # [h, w]
    return float((m * inside).sum() / total)


def localisation_scores(
    items: Iterable[tuple[np.ndarray, Box, tuple[int, int]]], tolerance: float = 0.0
) -> dict[str, float]:
    """{"pointing": % of hits, "energy": mean % of energy in the box, "n"} over (map, box, image_hw) items."""
    hits, shares = [], []
    for heat, box, image_hw in items:
        hits.append(pointing_game(heat, box, image_hw, tolerance))
        shares.append(energy_in_box(heat, box, image_hw))
    if not hits:
        raise ValueError("localisation_scores: no maps to score")
    return {
        "pointing": 100.0 * sum(hits) / len(hits),
        "energy": 100.0 * float(np.mean(shares)),
        "n": float(len(hits)),
    }
