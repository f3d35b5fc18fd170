"""Referring to objects: attribute descriptions ("the small red circle"), uniqueness, clear relations.

A description names some of (size, colour, shape); an object is referred to only by a description that
matches it alone, so "the red circle" never leaves a choice. Relations are asserted only when they are
clear: centres apart by at least the larger radius along the axis in question.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import lru_cache
from itertools import combinations

import numpy as np

from clipvil.data.synthetic.scene import COLORS, SHAPES, SIZES, Scene, SceneObject

ATTRIBUTES: tuple[str, ...] = ("size", "color", "shape")
VALUES: dict[str, tuple[str, ...]] = {"size": SIZES, "color": tuple(COLORS), "shape": SHAPES}
NUMBER_WORDS: tuple[str, ...] = (
    "zero",
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
)
# Spatial relations: name -> (phrase, axis, sign). "left of" means a smaller x.
RELATIONS: dict[str, tuple[str, str, int]] = {
    "left": ("to the left of", "x", -1),
    "right": ("to the right of", "x", 1),
    "above": ("above", "y", -1),
    "below": ("below", "y", 1),
}
OPPOSITE = {"left": "right", "right": "left", "above": "below", "below": "above"}


@dataclass(frozen=True)
class Desc:
    """A set of required attribute values (None = any)."""

    size: str | None = None
    color: str | None = None
    shape: str | None = None

    def matches(self, obj: SceneObject) -> bool:
        return (
            (self.size is None or self.size == obj.size)
            and (self.color is None or self.color == obj.color)
            and (self.shape is None or self.shape == obj.shape)
        )

    def used(self) -> tuple[str, ...]:
        """The attributes this description names."""
        return tuple(a for a in ATTRIBUTES if getattr(self, a) is not None)

    def words(self, plural: bool = False, noun: str = "object") -> str:
        """'small red circle', 'red objects', 'crosses'."""
        head = self.shape or noun
        if plural:
            head = head + "es" if head.endswith(("s", "x")) else head + "s"
        return " ".join([w for w in (self.size, self.color) if w] + [head])


def describe(obj: SceneObject, attrs: tuple[str, ...]) -> Desc:
    """The description of `obj` that names exactly `attrs`."""
    return Desc(**{a: getattr(obj, a) for a in attrs})


def with_article(words: str) -> str:
    """'a red circle' / 'an orange star'."""
    return ("an " if words[0] in "aeiou" else "a ") + words


def count(scene: Scene, desc: Desc) -> int:
    """How many objects of the scene match `desc`."""
    n = 0
    for o in scene.objects:
        if desc.matches(o):
            n += 1
    return n


@lru_cache(maxsize=4096)
def unique_descs(scene: Scene, obj: SceneObject, exclude: tuple[str, ...] = ()) -> tuple[Desc, ...]:
    """Every description of `obj` (not naming the `exclude` attributes) that matches it alone, shortest
    first. Cached: question, caption and statement generators ask for the same objects many times."""
    allowed = [a for a in ATTRIBUTES if a not in exclude]
    out = []
    for k in range(1, len(allowed) + 1):
        for attrs in combinations(allowed, k):
            d = describe(obj, attrs)
            if count(scene, d) == 1:
                out.append(d)
    return tuple(out)


def pick_ref(
    scene: Scene, obj: SceneObject, rng: np.random.Generator, exclude: tuple[str, ...] = ()
) -> Desc | None:
    """A unique description of `obj`: the shortest one mostly, a longer one sometimes; None if none exists."""
    descs = unique_descs(scene, obj, exclude)
    if not descs:
        return None
    shortest = [d for d in descs if len(d.used()) == len(descs[0].used())]
    if len(descs) > len(shortest) and rng.random() < 0.3:
        return descs[int(rng.integers(len(shortest), len(descs)))]
    return shortest[int(rng.integers(len(shortest)))]


def relation(a: SceneObject, b: SceneObject, name: str) -> bool | None:
    """Whether `a` is `name` (left/right/above/below) of `b`: True / False when clear, None when too close."""
    _, axis, sign = RELATIONS[name]
    delta = (getattr(a, axis) - getattr(b, axis)) * sign
    margin = max(a.radius, b.radius)
    if delta >= margin:
        return True
    if delta <= -margin:
        return False
    return None


def related(scene: Scene, anchor: SceneObject, name: str) -> list[SceneObject] | None:
    """The objects clearly `name` of `anchor`, or None when some object's relation to it is unclear."""
    out = []
    for o in scene.objects:
        if o is anchor:
            continue
        r = relation(o, anchor, name)
        if r is None:
            return None
        if r:
            out.append(o)
    return out


def absent_variant(
    scene: Scene, obj: SceneObject, attrs: tuple[str, ...], rng: np.random.Generator
) -> Desc | None:
    """A description naming `attrs` that matches no object, made by changing one value of `obj`'s
    (a near miss: 'red star' when there is a red circle and a blue star); None if there is none."""
    desc = describe(obj, attrs)
    for attr in rng.permutation(list(attrs)):
        values = [v for v in VALUES[attr] if v != getattr(obj, attr)]
        for value in rng.permutation(values):
            candidate = replace(desc, **{str(attr): str(value)})
            if count(scene, candidate) == 0:
                return candidate
    return None
