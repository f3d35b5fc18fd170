"""Questions about a scene with one true answer each (shared by the VQA and GQA writers).

Each family function returns a `QA` or None when the scene does not allow it. Answers are balanced per
template by drawing the answer first (a yes/no coin, a uniform colour / count among those the scene can
give) and then a question with that answer, so the question text alone does not predict the answer.
Every QA also carries a GQA-style functional program and types.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from clipvil.data.synthetic.qa import QA, Program, choice, referable, yes_no
from clipvil.data.synthetic.refer import (
    COLORS,
    OPPOSITE,
    RELATIONS,
    SHAPES,
    SIZES,
    Desc,
    absent_variant,
    count,
    describe,
    related,
    relation,
    with_article,
)
from clipvil.data.synthetic.scene import Scene, SceneObject


def colour_question(scene: Scene, rng: np.random.Generator) -> QA | None:
    """'What color is the small circle?' -> 'red'."""
    cands = referable(scene, rng, ("color",))
    if not cands:
        return None
    target = choice(rng, sorted({o.color for o, _ in cands}))
    obj, desc = choice(rng, [c for c in cands if c[0].color == target])
    ref = "the " + desc.words()
    tid, q = choice(
        rng, [("what_color", f"What color is {ref}?"), ("what_is_color", f"What is the color of {ref}?")]
    )
    p = Program()
    p.add("query", "color", (p.ref(desc, obj),))
    return QA(
        "colour",
        f"colour.{tid}",
        q,
        obj.color,
        "other",
        f"The {desc.words()} is {obj.color}.",
        tuple(p.ops),
        ("query", "attr", "queryAttr"),
        ((desc.words(), obj.obj_id),),
    )


def shape_question(scene: Scene, rng: np.random.Generator) -> QA | None:
    """'What shape is the red object?' -> 'circle'."""
    cands = referable(scene, rng, ("shape",))
    if not cands:
        return None
    target = choice(rng, sorted({o.shape for o, _ in cands}))
    obj, desc = choice(rng, [c for c in cands if c[0].shape == target])
    ref = "the " + desc.words()
    tid, q = choice(
        rng, [("what_shape", f"What shape is {ref}?"), ("what_is_shape", f"What is the shape of {ref}?")]
    )
    p = Program()
    p.add("query", "shape", (p.ref(desc, obj),))
    return QA(
        "shape",
        f"shape.{tid}",
        q,
        obj.shape,
        "other",
        f"The {desc.words()} is {with_article(obj.shape)}.",
        tuple(p.ops),
        ("query", "attr", "queryAttr"),
        ((desc.words(), obj.obj_id),),
    )


def _count_filters(scene: Scene) -> list[Desc]:
    """Everything a counting question may filter on: all objects, one attribute, or colour + shape."""
    present = {(o.color, o.shape) for o in scene.objects}
    near = {(c, s) for c, _ in present for _, s in present}  # combinations of present values
    return (
        [Desc()]
        + [Desc(color=c) for c in COLORS]
        + [Desc(shape=s) for s in SHAPES]
        + [Desc(size=z) for z in SIZES]
        + [Desc(color=c, shape=s) for c, s in sorted(near)]
    )


def count_question(scene: Scene, rng: np.random.Generator) -> QA | None:
    """'How many red objects are there?' -> '2' (the count is drawn uniformly from those the scene allows)."""
    by_count: dict[int, list[Desc]] = {}
    for d in _count_filters(scene):
        by_count.setdefault(count(scene, d), []).append(d)
    n = choice(rng, sorted(by_count))
    desc = choice(rng, by_count[n])
    noun = "shape" if desc == Desc() else "object"
    plural = desc.words(plural=True, noun=noun)
    tid, q = choice(
        rng,
        [
            ("how_many", f"How many {plural} are there?"),
            ("how_many_picture", f"How many {plural} are in the picture?"),
        ],
    )
    p = Program()
    p.add("count", "?", (p.ref(desc, None),))
    full = f"There {'is' if n == 1 else 'are'} {n} {desc.words(plural=n != 1, noun=noun)}."
    return QA("count", f"count.{tid}", q, str(n), "number", full, tuple(p.ops), ("query", "obj", "count"), ())


_EXIST_ATTRS: tuple[tuple[str, ...], ...] = (
    ("shape",),
    ("color",),
    ("color", "shape"),
    ("size", "shape"),
    ("size", "color", "shape"),
)


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
    tid, q = choice(
        rng,
        [("is_there", f"Is there {with_article(singular)}?"), ("are_there_any", f"Are there any {plural}?")],
    )
    full = f"Yes, there is {with_article(singular)}." if want else f"No, there are no {plural}."
    p = Program()
    p.add("exist", "?", (p.ref(desc, obj if want else None),))
    detailed = ("exist" if attrs == ("shape",) else "existAttr") + ("" if want else "C")
    return QA(
        "exist",
        f"exist.{tid}",
        q,
        yes_no(want),
        "yes/no",
        full,
        tuple(p.ops),
        ("verify", "obj", detailed),
        ((singular, obj.obj_id),) if want else (),
    )


Pair = tuple[SceneObject, Desc, SceneObject, Desc]


def _clear_pairs(
    scene: Scene, rng: np.random.Generator, names: tuple[str, ...]
) -> list[tuple[SceneObject, Desc, SceneObject, Desc, str]]:
    """(a, desc_a, b, desc_b, relation) for referable pairs whose relation is clear and true."""
    refs = referable(scene, rng, ())
    return [
        (a, da, b, db, n)
        for a, da in refs
        for b, db in refs
        if a is not b
        for n in names
        if relation(a, b, n)
    ]


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
        return QA(
            "spatial",
            f"spatial.verify_{asked}",
            f"Is {ra} {phrase} {rb}?",
            yes_no(want),
            "yes/no",
            full,
            tuple(p.ops),
            ("verify", "rel", "relVerify" + ("" if want else "C")),
            refs,
        )
    first, second = (name, OPPOSITE[name]) if rng.random() < 0.5 else (OPPOSITE[name], name)
    q = f"Is {ra} {RELATIONS[first][0]} or {RELATIONS[second][0]} {rb}?"
    p.add(
        "choose rel",
        f"{db.shape or 'object'},{RELATIONS[first][0]}|{RELATIONS[second][0]},o ({b.obj_id})",
        (sa,),
    )
    axis = "x" if name in ("left", "right") else "y"
    return QA(
        "spatial",
        f"spatial.choose_{axis}",
        q,
        name,
        "other",
        f"{ra.capitalize()} is {RELATIONS[name][0]} {rb}.",
        tuple(p.ops),
        ("choose", "rel", "chooseRel"),
        refs,
    )


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
    said = answer if attr == "color" else with_article(answer)
    full = f"The object {RELATIONS[name][0]} the {db.words()} is {said}."
    return QA(
        "spatial",
        f"spatial.query_{attr}",
        q,
        answer,
        "other",
        full,
        tuple(p.ops),
        ("query", "rel", "relS"),
        (("object", a.obj_id), (db.words(), b.obj_id)),
    )


def _compare_pairs(scene: Scene, rng: np.random.Generator, kind: str, want: bool) -> list[Pair]:
    """Referable pairs (references not naming `kind`) that differ in size, or agree in `kind` iff `want`."""
    refs = referable(scene, rng, (kind,))
    if kind == "size":
        return [(a, da, b, db) for a, da in refs for b, db in refs if a.size != b.size]
    return [
        (a, da, b, db)
        for a, da in refs
        for b, db in refs
        if a is not b and (getattr(a, kind) == getattr(b, kind)) == want
    ]


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
        q = choice(
            rng,
            [f"Are {ra} and {rb} the same {kind}?", f"Does {ra} have the same {kind} as {rb}?"]
            if kind == "color"
            else [f"Do {ra} and {rb} have the same {kind}?", f"Are {ra} and {rb} the same {kind}?"],
        )
        full = f"{'Yes' if want else 'No'}, {ra} and {rb} are {'the same' if want else 'different'} {kind}s."
        p.add(f"same {kind}", "", (sa, sb))
        tid, detailed = f"compare.same_{kind}", "twoSame" + ("" if want else "C")
    return QA(
        "compare",
        tid,
        q,
        yes_no(want),
        "yes/no",
        full,
        tuple(p.ops),
        ("compare", "attr", detailed),
        ((da.words(), a.obj_id), (db.words(), b.obj_id)),
    )


Family = Callable[[Scene, np.random.Generator], "QA | None"]
VQA_FAMILIES: dict[str, Family] = {
    "colour": colour_question,
    "shape": shape_question,
    "count": count_question,
    "exist": exist_question,
    "spatial": spatial_question,
    "compare": compare_question,
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


__all__ = ["VQA_FAMILIES", "Family", "ask"]
