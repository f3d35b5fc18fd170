"""The record of one generated question (`QA`), its GQA-style program builder and small shared helpers."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeVar

import numpy as np

from clipvil.data.synthetic.refer import COLORS, SHAPES, Desc, pick_ref
from clipvil.data.synthetic.scene import Scene, SceneObject

T = TypeVar("T")
Op = tuple[str, tuple[int, ...], str]  # GQA semantic step: (operation, dependencies, argument)


@dataclass(frozen=True)
class QA:
    """One question with its answer and metadata."""

    family: str  # colour | shape | count | exist | spatial | compare | verify | choose | logical
    template: str  # e.g. "colour.what_color": answers are balanced per template
    question: str
    answer: str  # already in official normalised form (lower case, digits, no articles)
    answer_type: str  # VQA answer type: "yes/no" | "number" | "other"
    full_answer: str  # GQA fullAnswer sentence
    program: tuple[Op, ...]  # GQA "semantic"
    types: tuple[str, str, str]  # GQA (structural, semantic, detailed)
    refs: tuple[tuple[str, int], ...]  # (phrase as written, obj_id) for GQA annotations

    def answer_group(self) -> str | None:
        """GQA's global group: the kind of an open answer ('color', 'shape', ...); None for yes/no."""
        if self.answer_type == "yes/no":
            return None
        if self.answer_type == "number":
            return "number"
        return "color" if self.answer in COLORS else "shape" if self.answer in SHAPES else "position"


class Program:
    """Builds a GQA-style program step by step."""

    def __init__(self) -> None:
        self.ops: list[Op] = []

    def add(self, operation: str, argument: str, deps: tuple[int, ...] = ()) -> int:
        self.ops.append((operation, deps, argument))
        return len(self.ops) - 1

    def ref(self, desc: Desc, obj: SceneObject | None) -> int:
        """select + filter steps that find `desc`; the selected object's id when it is known."""
        step = self.add("select", f"{desc.shape or 'object'} ({obj.obj_id if obj else '-'})")
        for attr in ("size", "color"):
            if getattr(desc, attr):
                step = self.add(f"filter {attr}", str(getattr(desc, attr)), (step,))
        return step


def yes_no(flag: bool) -> str:
    return "yes" if flag else "no"


def choice(rng: np.random.Generator, items: list[T]) -> T:
    """A uniform pick from a non-empty list."""
    return items[int(rng.integers(len(items)))]


def referable(
    scene: Scene, rng: np.random.Generator, exclude: tuple[str, ...]
) -> list[tuple[SceneObject, Desc]]:
    """Each object that has a unique description avoiding `exclude`, with one such description."""
    out = []
    for o in scene.objects:
        d = pick_ref(scene, o, rng, exclude)
        if d is not None:
            out.append((o, d))
    return out
