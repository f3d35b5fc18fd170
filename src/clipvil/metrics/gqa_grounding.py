"""GQA's grounding score (attention models only), as the official eval.py (gqadataset.org) computes it.

For one question, the gold regions are the scene-graph boxes of the objects its question and full-answer
annotations point at (``annotations.question`` / ``annotations.fullAnswer``: {token index: object id}, each
pointer counted once), plus the whole image when the question is about the scene. The score is
sum over regions and attention cells of ``attention(cell) * |cell ∩ region| / |cell|``: the attention mass
that falls on the gold regions (it can exceed 1 when regions overlap). All coordinates are fractions of the
image size.

Attention formats (eval.py's attentions file, ``[{"questionId": str, "attention": ...}]``):
- spatial: a ``map_size x map_size`` nested list. As in eval.py, ``attention[i][j]`` is the cell
  ``x in [i/m, (i+1)/m], y in [j/m, (j+1)/m]``: the *first* index runs along x, so pass a row-major
  ``[row][col]`` map transposed;
- object-based: a list of ``[x0, y0, x1, y1, attention]``, boxes as fractions of the image.

Where eval.py cannot run as written, the evident intent is taken (and noted): its object-based branch reads
an undefined name (here: the given boxes), and its "whole scene" test looks for the word "scene" among
the *keys* of each program step, which never matches (here: in the step's "operation: argument" text).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

Box = tuple[float, float, float, float]  # (x0, y0, x1, y1), fractions of the image
_METRIC = "gqa_grounding"


def _overlap(a0: float, a1: float, b0: float, b1: float) -> float:
    """Length of the intersection of two intervals (0 when they do not overlap)."""
    return max(0.0, min(a1, b1) - max(a0, b0))


def intersection_rate(cell: Box, region: Box) -> float:
    """|cell ∩ region| / |cell|; a ValueError for an empty cell."""
    area = (cell[2] - cell[0]) * (cell[3] - cell[1])
    if area <= 0:
        raise ValueError(f"{_METRIC}: attention box {cell} has no area")
    inter = _overlap(cell[0], cell[2], region[0], region[2]) * _overlap(cell[1], cell[3], region[1], region[3])
    return inter / area


def object_region(scene_graph: Mapping[str, Any], object_id: str, where: str) -> Box:
    """The box of a scene-graph object (x, y, w, h in pixels) as fractions of the image."""
    objects = scene_graph.get("objects")
    if not isinstance(objects, Mapping) or object_id not in objects:
        raise ValueError(f"{where}: object {object_id!r} is not in the scene graph")
    obj = objects[object_id]
    width, height = float(scene_graph["width"]), float(scene_graph["height"])
    x0, y0 = float(obj["x"]) / width, float(obj["y"]) / height
    return (x0, y0, x0 + float(obj["w"]) / width, y0 + float(obj["h"]) / height)


def gold_regions(question: Mapping[str, Any], scene_graph: Mapping[str, Any], where: str) -> list[Box]:
    """The regions a question and its full answer refer to (and the whole image for scene questions)."""
    annotations = question.get("annotations") or {}
    regions = [
        object_region(scene_graph, str(pointer), where)
        for part in ("question", "fullAnswer")
        for pointer in (annotations.get(part) or {}).values()
    ]
    steps = question.get("semantic") or []
    if any("scene" in f"{s.get('operation', '')}: {s.get('argument', '')}" for s in steps):
        regions.append((0.0, 0.0, 1.0, 1.0))
    return regions


def attention_cells(attention: Any, map_size: int, object_features: bool, where: str) -> list[tuple[Box, float]]:
    """(box, attention) per cell of a spatial map or per object-based box."""
    if object_features:
        cells = []
        for row in attention:
            if len(row) != 5:
                raise ValueError(f"{where}: object attention rows are [x0, y0, x1, y1, attention], got {row!r}")
            x0, y0, x1, y1, value = (float(v) for v in row)
            cells.append(((x0, y0, x1, y1), value))
        return cells
    if len(attention) != map_size or any(len(r) != map_size for r in attention):
        raise ValueError(f"{where}: spatial attention must be {map_size}x{map_size}")
    edge = 1.0 / map_size
    return [
        ((edge * i, edge * j, edge * (i + 1), edge * (j + 1)), float(attention[i][j]))
        for i in range(map_size)
        for j in range(map_size)
    ]


def grounding_score(
    question: Mapping[str, Any],
    scene_graph: Mapping[str, Any],
    attention: Sequence[Any],
    *,
    map_size: int = 7,
    object_features: bool = False,
    where: str = _METRIC,
) -> float:
    """The attention mass one question puts on its gold regions (a fraction, not a percent)."""
    cells = attention_cells(attention, map_size, object_features, where)
    return sum(
        value * intersection_rate(cell, region)
        for region in gold_regions(question, scene_graph, where)
        for cell, value in cells
    )


__all__ = ["attention_cells", "gold_regions", "grounding_score", "intersection_rate", "object_region"]
