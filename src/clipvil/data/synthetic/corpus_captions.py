"""One alt-text per corpus image, in one of several styles, always true of the scene.

Styles (chosen per image): a descriptive sentence listing the objects; a count-first sentence; object
positions on a 3x3 grid; a pairwise spatial relation plus the rest; web-like tags; colour counts; shape counts.
Most name colour and shape of every object; sizes, fills, the backdrop, the light, clutter and overlap are
added some of the time — as web captions mention some things and omit others.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

import numpy as np

from clipvil.data.synthetic.corpus_scene import BACKDROPS, CorpusObject, CorpusScene

NUMBERS = ("no", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
_PLURAL = {"cross": "crosses"}


def plural(noun: str, n: int) -> str:
    return noun if n == 1 else _PLURAL.get(noun, noun + "s")


def _article(phrase: str) -> str:
    return ("an " if phrase[0] in "aeiou" else "a ") + phrase


def describe(obj: CorpusObject, rng: np.random.Generator, p_size: float = 0.4, p_fill: float = 0.6) -> str:
    """'red circle', 'large striped blue hexagon', 'outlined green star'."""
    words = []
    if rng.random() < p_size:
        words.append(obj.size)
    if obj.fill != "solid" and rng.random() < p_fill:
        words.append(obj.fill)
    return " ".join([*words, obj.color, obj.shape])


def _join(parts: list[str]) -> str:
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


def position(obj: CorpusObject, scene: CorpusScene) -> str:
    """Where on a 3x3 grid: 'at the top left', 'in the centre', 'on the right'."""
    col = min(2, int(3 * obj.x / scene.width))
    row = min(2, int(3 * obj.y / scene.height))
    vert, horiz = ("top", "", "bottom")[row], ("left", "", "right")[col]
    if not vert and not horiz:
        return "in the centre"
    if vert and horiz:
        return f"at the {vert} {horiz}"
    return f"at the {vert}" if vert else f"on the {horiz}"


def _shuffled(scene: CorpusScene, rng: np.random.Generator) -> list[CorpusObject]:
    return [scene.objects[int(i)] for i in rng.permutation(len(scene.objects))]


def _sentence(scene: CorpusScene, rng: np.random.Generator) -> str:
    return _join([_article(describe(o, rng)) for o in _shuffled(scene, rng)])


def _count_first(scene: CorpusScene, rng: np.random.Generator) -> str:
    n = len(scene.objects)
    noun = plural(str(rng.choice(["shape", "object"])), n)
    return f"{NUMBERS[n]} {noun}: " + _join([_article(describe(o, rng)) for o in _shuffled(scene, rng)])


def _positions(scene: CorpusScene, rng: np.random.Generator) -> str:
    return _join([f"{_article(describe(o, rng, p_size=0.2))} {position(o, scene)}" for o in _shuffled(scene, rng)])


def _relation(scene: CorpusScene, rng: np.random.Generator) -> str:
    objs = _shuffled(scene, rng)
    if len(objs) < 2:
        return _sentence(scene, rng)
    a, b = objs[0], objs[1]  # as on the web, "a red star" may be one of two red stars
    dx, dy = a.x - b.x, a.y - b.y
    if abs(dx) >= abs(dy):
        rel = "to the left of" if dx < 0 else "to the right of"
    else:
        rel = "above" if dy < 0 else "below"
    head = f"{_article(describe(a, rng))} {rel} {_article(describe(b, rng))}"
    rest = [_article(describe(o, rng)) for o in objs[2:]]
    return head + (", with " + _join(rest) if rest else "")


def _tags(scene: CorpusScene, rng: np.random.Generator) -> str:
    tags = [describe(o, rng, p_size=0.2) for o in _shuffled(scene, rng)]
    tags.append(f"{BACKDROPS[scene.backdrop]} background")
    return str(rng.choice([" | ", ", ", " / "])).join(tags)


def _color_counts(scene: CorpusScene, rng: np.random.Generator) -> str:
    counts = sorted(Counter(o.color for o in scene.objects).items(), key=lambda kv: (-kv[1], kv[0]))
    return _join([f"{NUMBERS[n]} {c} {plural('shape', n)}" for c, n in counts])


def _shape_counts(scene: CorpusScene, rng: np.random.Generator) -> str:
    counts = sorted(Counter(o.shape for o in scene.objects).items(), key=lambda kv: (-kv[1], kv[0]))
    return _join([f"{NUMBERS[n]} {plural(s, n)}" for s, n in counts])


STYLES: dict[str, Callable[[CorpusScene, np.random.Generator], str]] = {
    "sentence": _sentence,
    "count_first": _count_first,
    "positions": _positions,
    "relation": _relation,
    "tags": _tags,
    "color_counts": _color_counts,
    "shape_counts": _shape_counts,
}
_STYLE_P = (0.22, 0.18, 0.16, 0.16, 0.12, 0.08, 0.08)


def _extras(scene: CorpusScene, rng: np.random.Generator) -> list[str]:
    out = []
    if rng.random() < 0.35:
        out.append(f"on a {BACKDROPS[scene.backdrop]} background")
    if scene.lighting.word != "soft" and rng.random() < 0.4:
        out.append(f"in {scene.lighting.word} light")
    if scene.clutter >= 5 and rng.random() < 0.4:
        out.append("with clutter")
    if any(o.occluded for o in scene.objects) and rng.random() < 0.4:
        out.append("partly overlapping")
    return out


def corpus_caption(scene: CorpusScene, rng: np.random.Generator) -> tuple[str, str]:
    """(style, caption) of one scene."""
    style = str(rng.choice(list(STYLES), p=_STYLE_P))
    text = STYLES[style](scene, rng)
    if style != "tags":
        text = " ".join([text, *_extras(scene, rng)])
    if rng.random() < 0.3 and style in ("sentence", "count_first", "relation"):
        text = str(rng.choice(["a photo of ", "an image of ", "a picture showing "])) + text
    return style, text


__all__ = ["STYLES", "corpus_caption", "describe", "plural", "position"]
