"""Five varied, true captions per scene (COCO style), each built as a grammar tree.

Templates: a relation between two objects, the object count with the background pattern, a list of the
objects, colour counts, an image "including" one object, a pair with the background. Every statement
is checked against the scene (relations only when clear), so captions never lie.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

import numpy as np

from clipvil.data.synthetic.grammar import (
    Tree,
    clause,
    copula,
    fragment,
    leaf,
    node,
    noun_phrase,
    relation_pp,
    there_is,
)
from clipvil.data.synthetic.qa import choice
from clipvil.data.synthetic.refer import NUMBER_WORDS, RELATIONS, relation
from clipvil.data.synthetic.scene import BACKGROUNDS, Scene, SceneObject

CAPTIONS_PER_IMAGE = 5


def article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def object_np(obj: SceneObject, rng: np.random.Generator) -> Tree:
    """'a red circle' or 'a small red circle' (size named half of the time)."""
    adjs = [obj.size, obj.color] if rng.random() < 0.5 else [obj.color]
    return noun_phrase(article(adjs[0]), adjs, obj.shape)


def _clear_pair(
    scene: Scene, rng: np.random.Generator, names: tuple[str, ...]
) -> tuple[SceneObject, SceneObject, str] | None:
    """A random (a, b, relation) with `a` clearly `relation` of `b`."""
    pairs = [
        (a, b, n)
        for a in scene.objects
        for b in scene.objects
        if a is not b
        for n in names
        if relation(a, b, n)
    ]
    return choice(rng, pairs) if pairs else None


def _relation_fragment(scene: Scene, rng: np.random.Generator) -> Tree | None:
    """'A small red circle to the left of a blue star.'"""
    pick = _clear_pair(scene, rng, ("left", "right", "above", "below"))
    if pick is None:
        return None
    a, b, name = pick
    return fragment(object_np(a, rng), relation_pp(RELATIONS[name][0], object_np(b, rng)))


def _relation_clause(scene: Scene, rng: np.random.Generator) -> Tree | None:
    """'A blue star is above a yellow cross.'"""
    pick = _clear_pair(scene, rng, ("above", "below", "left", "right"))
    if pick is None:
        return None
    a, b, name = pick
    return clause(object_np(a, rng), copula(relation_pp(RELATIONS[name][0], object_np(b, rng))))


def _background_np(scene: Scene) -> Tree:
    word = BACKGROUNDS[scene.background.kind]
    return noun_phrase(article(word), [word], "background")


def _count_background(scene: Scene, rng: np.random.Generator) -> Tree | None:
    """'There are four shapes on a striped background.'"""
    n = len(scene.objects)
    shapes = noun_phrase(NUMBER_WORDS[n], [], choice(rng, ["shapes", "objects"]), plural=True)
    return there_is(node("NP", shapes, node("PP", leaf("IN", "on"), _background_np(scene))), plural=True)


def _listing(scene: Scene, rng: np.random.Generator) -> Tree | None:
    """'A red circle, a blue star and a green square.' (at most three objects)."""
    objs = [scene.objects[int(i)] for i in rng.permutation(len(scene.objects))[:3]]
    parts: list[Tree] = []
    for k, obj in enumerate(objs):
        if k == len(objs) - 1:
            parts.append(leaf("CC", "and"))
        elif k > 0:
            parts.append(leaf(",", ","))
        parts.append(object_np(obj, rng))
    return fragment(*parts)


def _colour_counts(scene: Scene, rng: np.random.Generator) -> Tree | None:
    """'Two red shapes and one blue shape.' (every colour in the scene)."""
    counts = sorted(Counter(o.color for o in scene.objects).items(), key=lambda kv: (-kv[1], kv[0]))
    if len(counts) > 3:
        return None
    parts: list[Tree] = []
    for k, (color, n) in enumerate(counts):
        if k == len(counts) - 1 and k > 0:
            parts.append(leaf("CC", "and"))
        elif k > 0:
            parts.append(leaf(",", ","))
        parts.append(noun_phrase(NUMBER_WORDS[n], [color], "shapes" if n > 1 else "shape", plural=n > 1))
    return fragment(*parts)


def _including(scene: Scene, rng: np.random.Generator) -> Tree | None:
    """'An image with five colorful shapes, including a small green triangle.'"""
    n = len(scene.objects)
    shapes = noun_phrase(NUMBER_WORDS[n], ["colorful"], "shapes", plural=True)
    including = node("PP", leaf("VBG", "including"), object_np(choice(rng, list(scene.objects)), rng))
    inner = node("NP", shapes, leaf(",", ","), including)
    det, noun = choice(rng, [("an", "image"), ("a", "picture")])
    return fragment(noun_phrase(det, [], noun), node("PP", leaf("IN", "with"), inner))


def _pair_background(scene: Scene, rng: np.random.Generator) -> Tree | None:
    """'A large red square and a small white star on a plain background.'"""
    a, b = (scene.objects[int(i)] for i in rng.permutation(len(scene.objects))[:2])
    on = node("PP", leaf("IN", "on"), _background_np(scene))
    return fragment(object_np(a, rng), leaf("CC", "and"), object_np(b, rng), on)


TEMPLATES: tuple[Callable[[Scene, np.random.Generator], Tree | None], ...] = (
    _relation_fragment,
    _relation_clause,
    _count_background,
    _listing,
    _colour_counts,
    _including,
    _pair_background,
)


def captions(scene: Scene, rng: np.random.Generator) -> list[Tree]:
    """Five captions from five different templates. At least six templates always apply: any two
    non-overlapping objects are clearly apart on one axis, so the relation templates never fail."""
    out: list[Tree] = []
    for k in rng.permutation(len(TEMPLATES)):
        tree = TEMPLATES[int(k)](scene, rng)
        if tree is not None:
            out.append(tree)
        if len(out) == CAPTIONS_PER_IMAGE:
            break
    return out
