"""SNLI-VE-style hypotheses about a scene: one entailment, one neutral and one contradiction per premise.

- entailment: a true statement about what is visible (colour, shape, relation, size, count);
- contradiction: a false statement of the same kinds about objects that are present;
- neutral: a statement about a present object that no picture can decide (material, weight, smell,
  who drew it). So entailment vs contradiction needs the image; neutral is recognisable from its wording.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from clipvil.data.synthetic.grammar import (
    Tree,
    clause,
    copula,
    leaf,
    node,
    noun_phrase,
    relation_pp,
    there_is,
)
from clipvil.data.synthetic.qa import choice, referable
from clipvil.data.synthetic.refer import (
    ATTRIBUTES,
    NUMBER_WORDS,
    OPPOSITE,
    RELATIONS,
    VALUES,
    Desc,
    count,
    describe,
    relation,
)
from clipvil.data.synthetic.scene import Scene

LABELS: tuple[str, ...] = ("entailment", "neutral", "contradiction")
_MATERIALS = ("wood", "metal", "plastic", "paper", "glass")
_PROPERTIES = ("heavy", "warm", "cold", "expensive", "soft", "wet", "new", "old", "sticky")
_MAKERS = (("a", "child"), ("an", "artist"), ("a", "teacher"), ("a", "robot"))
_SMELLS = ("lemons", "smoke", "roses", "soap")


def the(desc: Desc) -> Tree:
    adjs = [w for w in (desc.size, desc.color) if w]
    return noun_phrase("the", adjs, desc.shape or "object")


def _attribute(scene: Scene, rng: np.random.Generator, truth: bool) -> Tree | None:
    """'The small circle is red.' / 'The red object is a star.'"""
    attr = choice(rng, ["color", "shape"])
    cands = referable(scene, rng, (attr,))
    if not cands:
        return None
    obj, desc = choice(rng, cands)
    value = getattr(obj, attr) if truth else choice(rng, [v for v in VALUES[attr] if v != getattr(obj, attr)])
    if attr == "color":
        pred = node("ADJP", leaf("JJ", value))
    else:
        pred = noun_phrase("an" if value[0] in "aeiou" else "a", [], value)
    return clause(the(desc), copula(pred))


def _relation(scene: Scene, rng: np.random.Generator, truth: bool) -> Tree | None:
    """'The red circle is to the left of the star.' (the opposite relation when false)."""
    refs = referable(scene, rng, ())
    pairs = [
        (da, db, n) for a, da in refs for b, db in refs if a is not b for n in RELATIONS if relation(a, b, n)
    ]
    if not pairs:
        return None
    da, db, name = choice(rng, pairs)
    said = name if truth else OPPOSITE[name]
    return clause(the(da), copula(relation_pp(RELATIONS[said][0], the(db))))


def _size(scene: Scene, rng: np.random.Generator, truth: bool) -> Tree | None:
    """'The circle is bigger than the blue star.' (sizes never named in the references)."""
    refs = referable(scene, rng, ("size",))
    pairs = [(a, da, db) for a, da in refs for b, db in refs if a.size != b.size]
    if not pairs:
        return None
    a, da, db = choice(rng, pairs)
    bigger = (a.size == "large") == truth
    pred = node(
        "ADJP", leaf("JJR", "bigger" if bigger else "smaller"), node("PP", leaf("IN", "than"), the(db))
    )
    return clause(the(da), copula(pred))


def _count(scene: Scene, rng: np.random.Generator, truth: bool) -> Tree | None:
    """'There are two red shapes.' / 'There is one circle.' / 'There are no green shapes.'"""
    obj = choice(rng, list(scene.objects))
    desc = choice(rng, [Desc(color=obj.color), Desc(shape=obj.shape), Desc(color=obj.color, shape=obj.shape)])
    n = count(scene, desc)
    if not truth:
        n = choice(rng, [m for m in range(len(scene.objects) + 1) if m != n and abs(m - n) <= 2])
    noun = desc.shape or "shape"
    plural = n != 1
    if plural:
        noun = noun + "es" if noun.endswith(("s", "x")) else noun + "s"
    det = "no" if n == 0 else NUMBER_WORDS[n]
    return there_is(noun_phrase(det, [desc.color] if desc.color else [], noun, plural), plural)


def _neutral(scene: Scene, rng: np.random.Generator) -> Tree:
    """A statement no picture decides, about a present object."""
    cands = referable(scene, rng, ())
    _, desc = choice(rng, cands) if cands else (None, describe(scene.objects[0], ATTRIBUTES))
    subject = the(desc)
    kind = choice(rng, ["material", "property", "maker", "smell"])
    if kind == "material":
        material = noun_phrase("", [], choice(rng, list(_MATERIALS)))
        return clause(
            subject, copula(node("VP", leaf("VBN", "made"), node("PP", leaf("IN", "of"), material)))
        )
    if kind == "property":
        return clause(subject, copula(node("ADJP", leaf("JJ", choice(rng, list(_PROPERTIES))))))
    if kind == "maker":
        det, who = choice(rng, list(_MAKERS))
        drawn = node("VP", leaf("VBN", "drawn"), node("PP", leaf("IN", "by"), noun_phrase(det, [], who)))
        return clause(subject, node("VP", leaf("VBD", "was"), drawn))
    smell = noun_phrase("", [], choice(rng, list(_SMELLS)), plural=True)
    return clause(subject, node("VP", leaf("VBZ", "smells"), node("PP", leaf("IN", "like"), smell)))


_VISUAL: tuple[Callable[[Scene, np.random.Generator, bool], Tree | None], ...] = (
    _attribute,
    _relation,
    _size,
    _count,
)


def _visual(scene: Scene, rng: np.random.Generator, truth: bool) -> Tree:
    for k in rng.permutation(len(_VISUAL)):
        tree = _VISUAL[int(k)](scene, rng, truth)
        if tree is not None:
            return tree
    raise RuntimeError(f"image {scene.image_id}: no {'true' if truth else 'false'} statement possible")


def hypotheses(scene: Scene, rng: np.random.Generator) -> list[tuple[str, Tree]]:
    """(label, hypothesis) for entailment, neutral, contradiction, in that order."""
    return [
        ("entailment", _visual(scene, rng, True)),
        ("neutral", _neutral(scene, rng)),
        ("contradiction", _visual(scene, rng, False)),
    ]
