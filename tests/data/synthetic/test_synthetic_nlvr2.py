"""Synthetic NLVR2: the files read back with the official-format reader, every label re-decided from the
scenes by a parser of the sentences written here, balance, set structure, determinism."""

from __future__ import annotations

import json
import re
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import pytest

from clipvil.data.nlvr2 import read_nlvr2
from clipvil.data.synthetic.nlvr2 import PAIRS_PER_SET, nlvr2_file, write_nlvr2, write_nlvr2_world
from clipvil.data.synthetic.scene import Scene, sample_scene
from clipvil.data.synthetic.spec import WorldSpec

_COLORS = ("red", "orange", "yellow", "green", "blue", "purple", "white", "black")
_SHAPES = {"circle": "circles", "square": "squares", "triangle": "triangles", "diamond": "diamonds",
           "star": "stars", "cross": "crosses"}
_NUMBERS = {w: i for i, w in enumerate(["zero", "one", "two", "three", "four", "five", "six", "seven", "eight",
                                        "nine"])}
_PHRASE = r"(?P<np>(?:an? )?(?:\w+ )?\w+)"


def _counter(phrase: str):
    """A function scene -> number of objects the noun phrase ("a red star", "crosses", "red objects") names."""
    words = phrase.split()
    if words[0] in ("a", "an"):
        words = words[1:]
    color = words[0] if len(words) == 2 else None
    noun = words[-1]
    assert color is None or color in _COLORS, phrase
    shape = next((s for s, plural in _SHAPES.items() if noun in (s, plural)), None)
    assert shape is not None or noun in ("object", "objects"), phrase
    return lambda scene: sum(1 for o in scene.objects if (color is None or o.color == color)
                             and (shape is None or o.shape == shape))


def _truth(sentence: str, left: Scene, right: Scene) -> tuple[str, bool]:
    """(kind, truth) of a sentence about the pair, decided from the scene objects."""
    rules = [
        ("more", rf"The (left|right) image has more {_PHRASE} than the (left|right) one\.",
         lambda m, c: (c(left), c(right))[m[1] == "right"] > (c(left), c(right))[m[1] == "left"]),
        ("both", rf"Both images contain {_PHRASE}\.", lambda m, c: c(left) > 0 and c(right) > 0),
        ("exactly_one", rf"Exactly one image contains {_PHRASE}\.", lambda m, c: (c(left) > 0) != (c(right) > 0)),
        ("neither", rf"Neither image contains {_PHRASE}\.", lambda m, c: c(left) + c(right) == 0),
        ("count_side", rf"The (left|right) image contains exactly (\w+) {_PHRASE}\.",
         lambda m, c: c(left if m[1] == "left" else right) == _NUMBERS[m[2]]),
        ("total", rf"There (?:is|are) exactly (\w+) {_PHRASE} in total\.",
         lambda m, c: c(left) + c(right) == _NUMBERS[m[1]]),
        ("same", rf"Both images contain the same number of {_PHRASE}\.", lambda m, c: c(left) == c(right)),
    ]
    for kind, pattern, rule in rules:
        m = re.fullmatch(pattern, sentence)
        if m:  # (a phrase has at most 3 words: "Both images contain the same number of ..." is not "both")
            return kind, rule(m, _counter(m["np"]))
    raise AssertionError(f"unparsed sentence {sentence!r}")


def _scenes(n: int = 64, seed: int = 5) -> list[Scene]:
    spec = WorldSpec(n_images=n, seed=seed, split_fractions=(1.0, 0.0, 0.0))
    return [sample_scene(spec, i) for i in range(1, n + 1)]


def test_labels_are_true_of_the_scenes_and_balanced(tmp_path: Path) -> None:
    scenes = _scenes(97)  # 48 pairs (the odd last scene is left out) -> 12 sets of 4 pairs
    by_id = {s.image_id: s for s in scenes}
    path = tmp_path / "dev.json"
    assert write_nlvr2(scenes, path, np.random.default_rng(0), "dev") == 12 * 4 * 2
    split = read_nlvr2(path)  # the official format, validated
    assert split.warnings == {}  # one sentence per sentence group
    kinds = Counter()
    for example, raw in zip(split.examples, map(json.loads, path.read_text().splitlines()), strict=True):
        left, right = by_id[raw["left_image_id"]], by_id[raw["right_image_id"]]
        assert raw["left_url"] == f"coco/train2014/COCO_train2014_{left.image_id:012d}.jpg"
        kind, truth = _truth(example.sentence, left, right)
        assert truth == example.label, (example.identifier, example.sentence)
        kinds[kind] += 1
    assert len(kinds) >= 5, kinds  # the families are all in use
    n_true = sum(e.label for e in split.examples)
    assert abs(n_true - (len(split.examples) - n_true)) <= PAIRS_PER_SET


def test_set_structure(tmp_path: Path) -> None:
    scenes = _scenes(40)  # 20 pairs: 5 sets of 4
    path = tmp_path / "train.json"
    write_nlvr2(scenes, path, np.random.default_rng(1), "train")
    examples = read_nlvr2(path).examples
    groups = defaultdict(list)
    for e in examples:
        groups[e.sentence_key].append(e)
    assert len(groups) == 5 * 2 and all(len(g) == 4 for g in groups.values())
    # pairs of a set are consecutive scenes: pair p of set s is scenes 8s + 2p + 1 (left) and + 2 (right)
    for raw in map(json.loads, path.read_text().splitlines()):
        _, set_id, pair_id, _ = raw["identifier"].split("-")
        assert raw["left_image_id"] == 8 * int(set_id) + 2 * int(pair_id) + 1
        assert raw["right_image_id"] == raw["left_image_id"] + 1
    # a sentence is true of some pairs of its set and false of others, most of the time
    mixed = sum(len({e.label for e in g}) == 2 for g in groups.values())
    assert mixed >= len(groups) // 2


def test_deterministic_and_world_files(tmp_path: Path) -> None:
    scenes = _scenes(24)
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    write_nlvr2(scenes, a, np.random.default_rng(7))
    write_nlvr2(scenes, b, np.random.default_rng(7))
    assert a.read_bytes() == b.read_bytes()
    spec = WorldSpec(n_images=40, seed=2)  # 32 train / 4 val / 4 test
    counts = write_nlvr2_world(spec, tmp_path / "world")
    assert counts == {"train": 16 * 2, "val": 2 * 2, "test": 2 * 2}
    dev = read_nlvr2(tmp_path / "world" / nlvr2_file("val"))
    assert nlvr2_file("val") == "nlvr2/dev.json" and dev.examples[0].identifier == "dev-0-0-0"
    assert read_nlvr2(tmp_path / "world" / "nlvr2" / "test1.json").examples[0].parts[0] == "test1"
    again = write_nlvr2_world(spec, tmp_path / "again")
    assert again == counts
    assert (tmp_path / "again" / "nlvr2" / "train.json").read_bytes() == (
        tmp_path / "world" / "nlvr2" / "train.json"
    ).read_bytes()


@pytest.mark.parametrize("n", [1, 2, 3])
def test_tiny_splits(tmp_path: Path, n: int) -> None:
    path = tmp_path / "x.json"
    assert write_nlvr2(_scenes(n), path, np.random.default_rng(0)) == (n // 2) * 2
