"""GQA-style questions: the shared families (no counting, as in GQA) plus verify, choose and logical
ones, and the record of one question in the layout of GQA's balanced question files."""

from __future__ import annotations

from typing import Any

import numpy as np

from clipvil.data.synthetic.qa import QA, Op, Program, choice, referable, yes_no
from clipvil.data.synthetic.questions import (
    Family,
    colour_question,
    compare_question,
    exist_question,
    shape_question,
    spatial_question,
)
from clipvil.data.synthetic.refer import VALUES, Desc, absent_variant, describe, with_article
from clipvil.data.synthetic.scene import Scene, SceneObject


def _attr_phrase(attr: str, value: str) -> str:
    return value if attr == "color" else with_article(value)


def verify_question(scene: Scene, rng: np.random.Generator) -> QA | None:
    """'Is the small circle red?' / 'Is the red object a star?' -> yes / no (the wrong value is one present
    in the scene when possible)."""
    attr = choice(rng, ["color", "shape"])
    cands = referable(scene, rng, (attr,))
    if not cands:
        return None
    obj, desc = choice(rng, cands)
    want = bool(rng.random() < 0.5)
    true = getattr(obj, attr)
    others = sorted({getattr(o, attr) for o in scene.objects} - {true}) or [
        v for v in VALUES[attr] if v != true
    ]
    asked = true if want else choice(rng, others)
    ref = "the " + desc.words()
    p = Program()
    p.add(f"verify {attr}", asked, (p.ref(desc, obj),))
    full = f"{'Yes' if want else 'No'}, {ref} is {_attr_phrase(attr, true)}."
    return QA(
        "verify",
        f"verify.{attr}",
        f"Is {ref} {_attr_phrase(attr, asked)}?",
        yes_no(want),
        "yes/no",
        full,
        tuple(p.ops),
        ("verify", "attr", "verifyAttr" + ("" if want else "C")),
        ((desc.words(), obj.obj_id),),
    )


def choose_question(scene: Scene, rng: np.random.Generator) -> QA | None:
    """'Is the small circle red or blue?' -> 'red' (true value first or second at random)."""
    attr = choice(rng, ["color", "shape"])
    cands = referable(scene, rng, (attr,))
    if not cands:
        return None
    target = choice(rng, sorted({getattr(o, attr) for o, _ in cands}))
    obj, desc = choice(rng, [c for c in cands if getattr(c[0], attr) == target])
    other = choice(rng, [v for v in VALUES[attr] if v != target])
    first, second = (target, other) if rng.random() < 0.5 else (other, target)
    ref = "the " + desc.words()
    q = f"Is {ref} {_attr_phrase(attr, first)} or {_attr_phrase(attr, second)}?"
    p = Program()
    p.add(f"choose {attr}", f"{first}|{second}", (p.ref(desc, obj),))
    return QA(
        "choose",
        f"choose.{attr}",
        q,
        target,
        "other",
        f"The {desc.words()} is {_attr_phrase(attr, target)}.",
        tuple(p.ops),
        ("choose", "attr", "chooseAttr"),
        ((desc.words(), obj.obj_id),),
    )


def _pair_descs(
    scene: Scene, rng: np.random.Generator, flags: tuple[bool, bool]
) -> list[tuple[Desc, SceneObject | None]] | None:
    """Two different colour+shape descriptions, each present or absent as `flags` says, with the object
    a present one came from (None for an absent one); None when the scene cannot give them."""
    present: dict[Desc, SceneObject] = {}
    for o in scene.objects:
        present.setdefault(describe(o, ("color", "shape")), o)
    kinds = list(present)
    picks: list[tuple[Desc, SceneObject | None] | None] = [None, None]
    if all(flags):
        if len(kinds) < 2:
            return None
        order = rng.permutation(len(kinds))[:2]
        return [(kinds[int(i)], present[kinds[int(i)]]) for i in order]
    for k, flag in enumerate(flags):
        if flag:
            d = choice(rng, kinds)
            picks[k] = (d, present[d])
        else:
            d = absent_variant(scene, choice(rng, list(scene.objects)), ("color", "shape"), rng)
            picks[k] = None if d is None else (d, None)
    first, second = picks
    if first is None or second is None or first[0] == second[0]:
        return None
    return [first, second]


def logical_question(scene: Scene, rng: np.random.Generator) -> QA | None:
    """'Is there a red circle or a blue star?' / 'Are there both a red circle and a blue star?' -> yes / no.
    The answer is drawn first; which of the two is present is then arranged to give it."""
    op = choice(rng, ["or", "and"])
    want = bool(rng.random() < 0.5)
    if op == "or":
        flags = (True, bool(rng.random() < 0.5)) if want else (False, False)
    else:
        flags = (True, True) if want else (bool(rng.random() < 0.5), False)
    if rng.random() < 0.5:
        flags = flags[::-1]
    pair = _pair_descs(scene, rng, flags)
    if pair is None:
        return None
    (d1, o1), (d2, o2) = pair
    w1, w2 = with_article(d1.words()), with_article(d2.words())
    q = f"Is there {w1} or {w2}?" if op == "or" else f"Are there both {w1} and {w2}?"
    p = Program()
    e1 = p.add("exist", "?", (p.ref(d1, o1),))
    e2 = p.add("exist", "?", (p.ref(d2, o2),))
    p.add(op, "", (e1, e2))
    if want:
        full = (
            f"Yes, there is {w1 if flags[0] else w2}."
            if op == "or"
            else f"Yes, there are both {w1} and {w2}."
        )
    else:
        full = (
            f"No, there is neither {w1} nor {w2}."
            if op == "or"
            else f"No, there is no {(d1 if not flags[0] else d2).words()}."
        )
    refs = tuple((d.words(), o.obj_id) for d, o in ((d1, o1), (d2, o2)) if o is not None)
    detailed = ("existOr" if op == "or" else "existAnd") + ("" if want else "C")
    return QA(
        "logical",
        f"logical.{op}",
        q,
        yes_no(want),
        "yes/no",
        full,
        tuple(p.ops),
        ("logical", "obj", detailed),
        refs,
    )


GQA_FAMILIES: dict[str, Family] = {
    "colour": colour_question,
    "shape": shape_question,
    "exist": exist_question,
    "spatial": spatial_question,
    "compare": compare_question,
    "verify": verify_question,
    "choose": choose_question,
    "logical": logical_question,
}


def _annotate(text: str, refs: tuple[tuple[str, int], ...]) -> dict[str, str]:
    """{token index: object id} for the head word of each referring phrase (tokens split on spaces)."""
    tokens = [t.strip("?.,").lower() for t in text.split()]
    out: dict[str, str] = {}
    start = 0
    for phrase, obj_id in refs:
        words = phrase.lower().split()
        for i in range(start, len(tokens) - len(words) + 1):
            if tokens[i : i + len(words)] == words:
                out[str(i + len(words) - 1)] = str(obj_id)
                start = i + len(words)
                break
    return out


def semantic_str(program: tuple[Op, ...]) -> str:
    """GQA's one-line rendering: 'select: circle (1203)->filter color: red [0]->query: shape [1]'."""
    parts = []
    for op, deps, arg in program:
        tail = f" [{', '.join(str(d) for d in deps)}]" if deps else ""
        parts.append(f"{op}: {arg}{tail}")
    return "->".join(parts)


def gqa_record(qa: QA, qid: str, image_id: str) -> dict[str, Any]:
    """One entry of a GQA balanced questions file (the fields and order of the real files)."""
    return {
        "semantic": [
            {"operation": op, "dependencies": list(deps), "argument": arg} for op, deps, arg in qa.program
        ],
        "entailed": [],
        "equivalent": [qid],
        "question": qa.question,
        "imageId": image_id,
        "isBalanced": True,
        "groups": {"global": qa.answer_group(), "local": qa.template},
        "answer": qa.answer,
        "semanticStr": semantic_str(qa.program),
        "annotations": {
            "answer": {},
            "question": _annotate(qa.question, qa.refs),
            "fullAnswer": _annotate(qa.full_answer, qa.refs),
        },
        "types": {"detailed": qa.types[2], "semantic": qa.types[1], "structural": qa.types[0]},
        "fullAnswer": qa.full_answer,
    }
