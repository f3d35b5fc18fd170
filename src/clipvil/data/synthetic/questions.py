"""Questions about a scene with one true answer each (shared by the VQA and GQA writers).

Each family function returns a `QA` or None when the scene does not allow it. Answers are balanced per
template by drawing the answer first (a yes/no coin, a uniform colour / count among those the scene can
give) and then a question with that answer, so the question text alone does not predict the answer.
Every QA also carries a GQA-style functional program and types.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import numpy as np

from clipvil.data.synthetic.refer import (
    ATTRIBUTES,
    COLORS,
    OPPOSITE,
    RELATIONS,
    SHAPES,
    SIZES,
    Desc,
    absent_variant,
    count,
    describe,
    pick_ref,
    related,
    relation,
    with_article,
)
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


def referable(scene: Scene, rng: np.random.Generator, exclude: tuple[str, ...]) -> list[tuple[SceneObject, Desc]]:
    """Each object that has a unique description avoiding `exclude`, with one such description."""
    out = []
    for o in scene.objects:
        d = pick_ref(scene, o, rng, exclude)
        if d is not None:
            out.append((o, d))
    return out


def colour_question(scene: Scene, rng: np.random.Generator) -> QA | None:
    """'What color is the small circle?' -> 'red'."""
    cands = referable(scene, rng, ("color",))
    if not cands:
        return None
    target = choice(rng, sorted({o.color for o, _ in cands}))
    obj, desc = choice(rng, [c for c in cands if c[0].color == target])
    ref = "the " + desc.words()
    tid, q = choice(rng, [("what_color", f"What color is {ref}?"), ("what_is_color", f"What is the color of {ref}?")])
    p = Program()
    p.add("query", "color", (p.ref(desc, obj),))
    return QA("colour", f"colour.{tid}", q, obj.color, "other", f"The {desc.words()} is {obj.color}.",
              tuple(p.ops), ("query", "attr", "queryAttr"), ((desc.words(), obj.obj_id),))


def shape_question(scene: Scene, rng: np.random.Generator) -> QA | None:
    """'What shape is the red object?' -> 'circle'."""
    cands = referable(scene, rng, ("shape",))
    if not cands:
        return None
    target = choice(rng, sorted({o.shape for o, _ in cands}))
    obj, desc = choice(rng, [c for c in cands if c[0].shape == target])
    ref = "the " + desc.words()
    tid, q = choice(rng, [("what_shape", f"What shape is {ref}?"), ("what_is_shape", f"What is the shape of {ref}?")])
    p = Program()
    p.add("query", "shape", (p.ref(desc, obj),))
    return QA("shape", f"shape.{tid}", q, obj.shape, "other", f"The {desc.words()} is {with_article(obj.shape)}.",
              tuple(p.ops), ("query", "attr", "queryAttr"), ((desc.words(), obj.obj_id),))


def _count_filters(scene: Scene) -> list[Desc]:
    """Everything a counting question may filter on: all objects, one attribute, or colour + shape."""
    present = {(o.color, o.shape) for o in scene.objects}
    near = {(c, s) for c, _ in present for _, s in present}  # combinations of present values
    return ([Desc()] + [Desc(color=c) for c in COLORS] + [Desc(shape=s) for s in SHAPES]
            + [Desc(size=z) for z in SIZES] + [Desc(color=c, shape=s) for c, s in sorted(near)])


def count_question(scene: Scene, rng: np.random.Generator) -> QA | None:
    """'How many red objects are there?' -> '2' (the count is drawn uniformly from those the scene allows)."""
    by_count: dict[int, list[Desc]] = {}
    for d in _count_filters(scene):
        by_count.setdefault(count(scene, d), []).append(d)
    n = choice(rng, sorted(by_count))
    desc = choice(rng, by_count[n])
    noun = "shape" if desc == Desc() else "object"
    plural = desc.words(plural=True, noun=noun)
    tid, q = choice(rng, [("how_many", f"How many {plural} are there?"),
                           ("how_many_picture", f"How many {plural} are in the picture?")])
    p = Program()
    p.add("count", "?", (p.ref(desc, None),))
    full = f"There {'is' if n == 1 else 'are'} {n} {desc.words(plural=n != 1, noun=noun)}."
    return QA("count", f"count.{tid}", q, str(n), "number", full, tuple(p.ops), ("query", "obj", "count"), ())


_EXIST_ATTRS: tuple[tuple[str, ...], ...] = (("shape",), ("color",), ("color", "shape"), ("size", "shape"),
                                            ("size", "color", "shape"))


def exist_question(scene: Scene, rng: np.random.Generator) -> QA | None:
    """'Is there a red star?' -> yes / no (near misses: the colour and the shape exist, not together)."""
    want = bool(rng.random() < 0.5)
    for k in rng.permutation(len(_EXIST_ATTRS)):
        attrs = _EXIST_ATTRS[int(k)]
        obj = choice(rng, list(scene.objects))
        desc = describe(obj, attrs) if want else absent_variant(scene, obj, attrs, rng)
        if desc is not None:
            break
    else:
        return None
    singular, plural = desc.words(), desc.words(plural=True)
    tid, q = choice(rng, [("is_there", f"Is there {with_article(singular)}?"),
                           ("are_there_any", f"Are there any {plural}?")])
    full = f"Yes, there is {with_article(singular)}." if want else f"No, there are no {plural}."
    p = Program()
    p.add("exist", "?", (p.ref(desc, obj if want else None),))
    detailed = ("exist" if attrs == ("shape",) else "existAttr") + ("" if want else "C")
    return QA("exist", f"exist.{tid}", q, yes_no(want), "yes/no", full, tuple(p.ops),
              ("verify", "obj", detailed), ((singular, obj.obj_id),) if want else ())


def _clear_pairs(scene: Scene, rng: np.random.Generator, names: tuple[str, ...], exclude: tuple[str, ...] = ()):
    """(a, desc_a, b, desc_b, relation) for referable pairs whose relation `name` is clear and true."""
    refs = referable(scene, rng, exclude)
    return [(a, da, b, db, n) for a, da in refs for b, db in refs if a is not b
            for n in names if relation(a, b, n)]


def spatial_question(scene: Scene, rng: np.random.Generator) -> QA | None:
    """Relation questions: verify (yes/no), choose (left/right, above/below), or query across a relation."""
    kind = choice(rng, ["verify", "choose", "query"])
    if kind == "query":
        return _relate_query(scene, rng)
    pairs = _clear_pairs(scene, rng, tuple(RELATIONS))
    if not pairs:
        return None
    a, da, b, db, name = choice(rng, pairs)
    ra, rb = "the " + da.words(), "the " + db.words()
    refs = ((da.words(), a.obj_id), (db.words(), b.obj_id))
    p = Program()
    sa = p.ref(da, a)
    if kind == "verify":
        want = bool(rng.random() < 0.5)
        asked = name if want else OPPOSITE[name]
        phrase = RELATIONS[asked][0]
        p.add("verify rel", f"{db.shape or 'object'},{phrase},o ({b.obj_id})", (sa,))
        full = f"{'Yes' if want else 'No'}, {ra} is {RELATIONS[name][0]} {rb}."
        return QA("spatial", f"spatial.verify_{asked}", f"Is {ra} {phrase} {rb}?", yes_no(want), "yes/no",
                  full, tuple(p.ops), ("verify", "rel", "relVerify" + ("" if want else "C")), refs)
    first, second = (name, OPPOSITE[name]) if rng.random() < 0.5 else (OPPOSITE[name], name)
    q = f"Is {ra} {RELATIONS[first][0]} or {RELATIONS[second][0]} {rb}?"
    p.add("choose rel", f"{db.shape or 'object'},{RELATIONS[first][0]}|{RELATIONS[second][0]},o ({b.obj_id})", (sa,))
    axis = "x" if name in ("left", "right") else "y"
    return QA("spatial", f"spatial.choose_{axis}", q, name, "other", f"{ra.capitalize()} is {RELATIONS[name][0]} {rb}.",
              tuple(p.ops), ("choose", "rel", "chooseRel"), refs)


def _relate_query(scene: Scene, rng: np.random.Generator) -> QA | None:
    """'What color is the object to the left of the blue star?' when exactly one object is clearly there."""
    options = []
    for b, db in referable(scene, rng, ()):
        for name in RELATIONS:
            hits = related(scene, b, name)
            if hits is not None and len(hits) == 1:
                options.append((hits[0], b, db, name))
    if not options:
        return None
    a, b, db, name = choice(rng, options)
    attr = choice(rng, ["color", "shape"])
    answer = getattr(a, attr)
    where = f"the object {RELATIONS[name][0]} the {db.words()}"
    q = f"What {attr} is {where}?"
    p = Program()
    step = p.add("relate", f"object,{RELATIONS[name][0]},s ({a.obj_id})", (p.ref(db, b),))
    p.add("query", attr, (step,))
    full = f"The object {RELATIONS[name][0]} the {db.words()} is {answer if attr == 'color' else with_article(answer)}."
    return QA("spatial", f"spatial.query_{attr}", q, answer, "other", full, tuple(p.ops),
              ("query", "rel", "relS"), (("object", a.obj_id), (db.words(), b.obj_id)))


def _compare_pairs(scene: Scene, rng: np.random.Generator, kind: str, want: bool):
    refs = referable(scene, rng, (kind,))
    if kind == "size":
        return [(a, da, b, db) for a, da in refs for b, db in refs if a.size != b.size]
    return [(a, da, b, db) for a, da in refs for b, db in refs
            if a is not b and (getattr(a, kind) == getattr(b, kind)) == want]


def compare_question(scene: Scene, rng: np.random.Generator) -> QA | None:
    """Size comparison or same colour / same shape, all yes/no; the answer is drawn first and the kinds
    are tried in turn until one can give it (so 'yes' stays as frequent as 'no')."""
    want = bool(rng.random() < 0.5)
    for kind in rng.permutation(["size", "color", "shape"]):
        kind = str(kind)
        pairs = _compare_pairs(scene, rng, kind, want)
        if pairs:
            break
    else:
        return None
    a, da, b, db = choice(rng, pairs)
    ra, rb = "the " + da.words(), "the " + db.words()
    p = Program()
    sa, sb = p.ref(da, a), p.ref(db, b)
    if kind == "size":
        word = "bigger" if (a.size == "large") == want else "smaller"
        actual = "bigger" if a.size == "large" else "smaller"
        q, full = f"Is {ra} {word} than {rb}?", f"{'Yes' if want else 'No'}, {ra} is {actual} than {rb}."
        p.add("compare", word, (sa, sb))
        tid, detailed = f"compare.{word}", "compare"
    else:
        q = choice(rng, [f"Are {ra} and {rb} the same {kind}?", f"Does {ra} have the same {kind} as {rb}?"]
                    if kind == "color" else [f"Do {ra} and {rb} have the same {kind}?",
                                             f"Are {ra} and {rb} the same {kind}?"])
        full = f"{'Yes' if want else 'No'}, {ra} and {rb} are {'the same' if want else 'different'} {kind}s."
        p.add(f"same {kind}", "", (sa, sb))
        tid, detailed = f"compare.same_{kind}", "twoSame" + ("" if want else "C")
    return QA("compare", tid, q, yes_no(want), "yes/no", full, tuple(p.ops), ("compare", "attr", detailed),
              ((da.words(), a.obj_id), (db.words(), b.obj_id)))


Family = Callable[[Scene, np.random.Generator], "QA | None"]
VQA_FAMILIES: dict[str, Family] = {
    "colour": colour_question, "shape": shape_question, "count": count_question,
    "exist": exist_question, "spatial": spatial_question, "compare": compare_question,
}


def ask(scene: Scene, families: dict[str, Family], n: int, rng: np.random.Generator) -> list[QA]:
    """`n` distinct questions, families taken in a shuffled round robin (a family that cannot be asked
    about this scene is skipped after a few tries). Fewer than `n` only for very uniform scenes."""
    names = list(families)
    order = [names[i] for i in rng.permutation(len(names))]
    out: list[QA] = []
    seen: set[str] = set()
    attempts = 0
    while len(out) < n and attempts < 20 * n:
        family = order[attempts % len(order)]
        attempts += 1
        qa = families[family](scene, rng)
        if qa is not None and qa.question not in seen:
            seen.add(qa.question)
            out.append(qa)
    return out


__all__ = ["ATTRIBUTES", "QA", "VQA_FAMILIES", "Family", "Program", "ask", "choice", "referable", "yes_no"]
