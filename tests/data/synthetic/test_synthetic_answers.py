"""Answer correctness: an independent oracle reads each question / statement / caption as text, resolves
its phrases against the scene records (which must pick exactly one object) and re-derives the answer.
It shares no code with the generator: only the vocabulary and the documented relation rule."""

from __future__ import annotations

import json
import re
from typing import Any

import numpy as np
from PIL import Image

from clipvil.data.synthetic import Manifest

SIZES = {"small", "large"}
COLORS = {"red", "orange", "yellow", "green", "blue", "purple", "white", "black"}
SHAPES = {"circle", "square", "triangle", "diamond", "star", "cross"}
NUMBERS = {
    w: i for i, w in enumerate(["no", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"])
}
REL = r"(to the left of|to the right of|above|below)"
RGB = {
    "red": (215, 40, 40),
    "orange": (240, 140, 30),
    "yellow": (240, 215, 40),
    "green": (50, 165, 70),
    "blue": (40, 90, 215),
    "purple": (135, 60, 185),
    "white": (245, 245, 245),
    "black": (20, 20, 20),
}


def singular(noun: str) -> str:
    if noun.endswith(("sses", "xes")):
        return noun[:-2]
    return noun.removesuffix("s")


def parse(phrase: str, plural: bool = False) -> dict[str, str | None] | None:
    """'small red circle' -> {size, color, shape}; None when a word is not in the vocabulary."""
    words = re.sub(r"^(the|a|an) ", "", phrase).split()
    noun = singular(words[-1]) if plural else words[-1]
    desc: dict[str, str | None] = {"size": None, "color": None, "shape": None}
    if noun in SHAPES:
        desc["shape"] = noun
    elif noun not in ("object", "shape"):
        return None
    for w in words[:-1]:
        key = "size" if w in SIZES else "color" if w in COLORS else None
        if key is None:
            return None
        desc[key] = w
    return desc


def matching(scene: dict[str, Any], phrase: str, plural: bool = False) -> list[dict[str, Any]]:
    desc = parse(phrase, plural)
    assert desc is not None, f"image {scene['image_id']}: cannot parse {phrase!r}"
    return [o for o in scene["objects"] if all(v is None or o[k] == v for k, v in desc.items())]


def the(scene: dict[str, Any], phrase: str) -> dict[str, Any]:
    hits = matching(scene, phrase)
    assert len(hits) == 1, f"image {scene['image_id']}: {phrase!r} matches {len(hits)} objects"
    return hits[0]


def holds(a: dict[str, Any], b: dict[str, Any], rel: str) -> bool:
    """The documented rule: a relation holds when centres differ by at least the larger radius."""
    axis, sign = {
        "to the left of": ("x", -1),
        "to the right of": ("x", 1),
        "above": ("y", -1),
        "below": ("y", 1),
    }[rel]
    delta = (a[axis] - b[axis]) * sign
    assert abs(delta) >= max(a["radius"], b["radius"]), f"unclear relation {rel!r} between {a} and {b}"
    return delta > 0


def clearly(a: dict[str, Any], b: dict[str, Any], rel: str) -> bool:
    """Whether the relation holds clearly (no assertion: used to search for a witness pair)."""
    axis, sign = {
        "to the left of": ("x", -1),
        "to the right of": ("x", 1),
        "above": ("y", -1),
        "below": ("y", 1),
    }[rel]
    return (a[axis] - b[axis]) * sign >= max(a["radius"], b["radius"])


def yn(flag: bool) -> str:
    return "yes" if flag else "no"


def _relation_answer(scene: dict[str, Any], q: str) -> str | None:
    if m := re.match(rf"^What (color|shape) is the object {REL} the (.+)\?$", q):
        anchor = the(scene, m[3])
        hits = [o for o in scene["objects"] if o is not anchor and holds(o, anchor, m[2])]
        assert len(hits) == 1
        return hits[0][m[1]]
    if m := re.match(rf"^Is the (.+?) {REL} or {REL} the (.+)\?$", q):
        a, b = the(scene, m[1]), the(scene, m[4])
        said = m[2] if holds(a, b, m[2]) else m[3]
        assert holds(a, b, said)
        return {"to the left of": "left", "to the right of": "right", "above": "above", "below": "below"}[
            said
        ]
    if m := re.match(rf"^Is the (.+?) {REL} the (.+)\?$", q):
        return yn(holds(the(scene, m[1]), the(scene, m[3]), m[2]))
    return None


def _compare_answer(scene: dict[str, Any], q: str) -> str | None:
    if m := re.match(r"^Is the (.+?) (bigger|smaller) than the (.+)\?$", q):
        a, b = the(scene, m[1]), the(scene, m[3])
        assert a["size"] != b["size"]
        return yn((a["size"] == "large") == (m[2] == "bigger"))
    for pattern in (
        r"^Are the (.+?) and the (.+?) the same (color|shape)\?$",
        r"^Do the (.+?) and the (.+?) have the same (color|shape)\?$",
        r"^Does the (.+?) have the same (color|shape) as the (.+)\?$",
    ):
        if m := re.match(pattern, q):
            x, y, attr = (m[1], m[3], m[2]) if pattern.startswith("^Does") else (m[1], m[2], m[3])
            return yn(the(scene, x)[attr] == the(scene, y)[attr])
    return None


def _logic_answer(scene: dict[str, Any], q: str) -> str | None:
    if m := re.match(r"^Is there an? (.+?) or an? (.+)\?$", q):
        return yn(bool(matching(scene, m[1]) or matching(scene, m[2])))
    if m := re.match(r"^Are there both an? (.+?) and an? (.+)\?$", q):
        return yn(bool(matching(scene, m[1]) and matching(scene, m[2])))
    if m := re.match(r"^Is there an? (.+)\?$", q):
        return yn(bool(matching(scene, m[1])))
    if m := re.match(r"^Are there any (.+)\?$", q):
        return yn(bool(matching(scene, m[1], plural=True)))
    return None


def _attribute_answer(scene: dict[str, Any], q: str) -> str | None:
    if m := re.match(r"^How many (.+) are (there|in the picture)\?$", q):
        return str(len(matching(scene, m[1], plural=True)))
    if m := re.match(r"^What (color|shape) is the (.+)\?$", q) or re.match(
        r"^What is the (color|shape) of the (.+)\?$", q
    ):
        return the(scene, m[2])[m[1]]
    if m := re.match(r"^Is the (.+?) (?:an? )?(\w+) or (?:an? )?(\w+)\?$", q):
        obj = the(scene, m[1])
        attr = "color" if m[2] in COLORS else "shape"
        assert obj[attr] in (m[2], m[3])
        return obj[attr]
    if m := re.match(r"^Is the (.+?) (?:an? )?(\w+)\?$", q):
        obj = the(scene, m[1])
        return yn(m[2] in (obj["color"], obj["shape"]))
    return None


def derive(scene: dict[str, Any], question: str) -> str:
    for rule in (_relation_answer, _compare_answer, _logic_answer, _attribute_answer):
        answer = rule(scene, question)
        if answer is not None:
            return answer
    raise AssertionError(f"oracle cannot read {question!r}")


def test_every_vqa_answer_rederived(world: Manifest, scenes: dict[int, dict[str, Any]]) -> None:
    checked = 0
    for split in ("train", "val"):
        questions = json.loads(world.path("vqa_questions", split).read_text())["questions"]
        text = {q["question_id"]: q["question"] for q in questions}
        for ann in json.loads(world.path("vqa_annotations", split).read_text())["annotations"]:
            expected = derive(scenes[ann["image_id"]], text[ann["question_id"]])
            assert ann["multiple_choice_answer"] == expected, text[ann["question_id"]]
            assert sum(a["answer"] == expected for a in ann["answers"]) >= 7
            checked += 1
    assert checked == 270 * 5


def test_every_gqa_answer_rederived(world: Manifest, scenes: dict[int, dict[str, Any]]) -> None:
    for split in world.splits:
        for qid, q in json.loads(world.path("gqa_questions", split).read_text()).items():
            scene = scenes[int(q["imageId"])]
            assert q["answer"] == derive(scene, q["question"]), (qid, q["question"])


def _statement_truth(scene: dict[str, Any], s: str) -> bool | None:
    """True / False for a visual statement, None for one about what a picture cannot show."""
    if re.search(r" (is made of|was drawn by|smells like) ", s) or re.match(
        r"^The .+ is (heavy|warm|cold|expensive|soft|wet|new|old|sticky)\.$", s
    ):
        return None
    if m := re.match(rf"^The (.+?) is {REL} the (.+)\.$", s):
        return holds(the(scene, m[1]), the(scene, m[3]), m[2])
    if m := re.match(r"^The (.+?) is (bigger|smaller) than the (.+)\.$", s):
        a, b = the(scene, m[1]), the(scene, m[3])
        assert a["size"] != b["size"]
        return (a["size"] == "large") == (m[2] == "bigger")
    if m := re.match(r"^There (?:is|are) (\w+) (.+)\.$", s):
        return len(matching(scene, m[2], plural=m[1] != "one")) == NUMBERS[m[1]]
    if m := re.match(r"^The (.+?) is (?:an? )?(\w+)\.$", s):
        obj = the(scene, m[1])
        return m[2] in (obj["color"], obj["shape"])
    raise AssertionError(f"oracle cannot read statement {s!r}")


def test_snli_ve_labels_rederived(world: Manifest, scenes: dict[int, dict[str, Any]]) -> None:
    expected = {True: "entailment", False: "contradiction", None: "neutral"}
    for split in world.splits:
        for line in world.path("snli_ve", split).read_text().splitlines():
            pair = json.loads(line)
            truth = _statement_truth(scenes[int(pair["Flickr30K_ID"])], pair["sentence2"])
            assert pair["gold_label"] == expected[truth], pair["sentence2"]


def test_captions_are_true(world: Manifest, scenes: dict[int, dict[str, Any]]) -> None:
    """Relation, count and colour-count captions checked against the scene; every caption is one of the
    known templates."""
    seen = {"relation": 0, "count": 0, "colours": 0, "other": 0}
    for split in world.splits:
        for ann in json.loads(world.path("captions", split).read_text())["annotations"]:
            scene, cap = scenes[ann["image_id"]], ann["caption"]
            if m := re.match(rf"^An? (.+?) (?:is )?{REL} an? (.+)\.$", cap):
                pairs = [(a, b) for a in matching(scene, m[1]) for b in matching(scene, m[3]) if a is not b]
                assert any(clearly(a, b, m[2]) for a, b in pairs), cap
                seen["relation"] += 1
            elif m := re.match(r"^There are (\w+) (?:shapes|objects) on an? (\w+) background\.$", cap):
                assert NUMBERS[m[1].lower()] == len(scene["objects"])
                kind = {
                    "plain": "solid",
                    "shaded": "gradient",
                    "striped": "stripes",
                    "checkered": "checker",
                    "mottled": "mottled",
                }[m[2]]
                assert scene["background"]["kind"] == kind
                seen["count"] += 1
            elif re.match(r"^(One|Two|Three|Four|Five|Six|Seven|Eight|Nine) \w+ shapes?[ ,.]", cap):
                for n, color in re.findall(r"(\w+) (\w+) shapes?", cap):
                    assert sum(o["color"] == color for o in scene["objects"]) == NUMBERS[n.lower()], cap
                seen["colours"] += 1
            else:
                assert re.match(r"^(An image|A picture) with |^An? .+(, | and ).+\.$", cap), cap
                seen["other"] += 1
    assert min(seen.values()) > 50, seen


def test_pixels_show_the_scene(world: Manifest, scenes: dict[int, dict[str, Any]]) -> None:
    """At each object's centre the image has (about) the object's colour: the JPEGs match the records."""
    for image_id in list(scenes)[:40]:
        scene = scenes[image_id]
        split = scene["split"]
        img = np.asarray(Image.open(world.path("coco_images", split) / scene["file_name"]), np.float32)
        assert img.shape == (scene["height"], scene["width"], 3)
        for o in scene["objects"]:
            x, y = round(o["x"]), round(o["y"])
            patch = img[y - 1 : y + 2, x - 1 : x + 2].reshape(-1, 3).mean(0)
            nearest = min(RGB, key=lambda c: float(np.abs(np.asarray(RGB[c]) - patch).sum()))
            assert nearest == o["color"], (image_id, o, patch)
