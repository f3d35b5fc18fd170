"""NLVR2-style examples over the synthetic world: a statement about a *pair* of scenes, true or false of it,
written as the official NLVR2 JSON lines (``clipvil.data.nlvr2`` reads them).

As in NLVR2, the scenes of a split are grouped into *sets* of up to eight consecutive scenes, i.e. up to four
image pairs (scene 2k on the left, 2k+1 on the right); an odd scene at the end of a split is left out.
Each set gets two statements, and each statement is paired with every pair of its set, so one sentence is
true of some pairs and false of others (what the official consistency metric groups by). Identifiers are
``split-set-pair-sentence`` with the NLVR2 split names (train / dev / test1).

Statements (all decided by counting objects of a colour and/or shape):

    The left image has more red objects than the right one.     |  Both images contain a blue star.
    Exactly one image contains a green circle.                  |  Neither image contains a cross.
    The right image contains exactly two squares.               |  There are exactly three stars in total.
    Both images contain the same number of yellow objects.

Labels are kept balanced: of a few random candidate statements, the one that brings the running
true / false difference of the split closest to zero is taken (then the one most mixed within its set),
so the difference never exceeds the pairs of one set.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from clipvil.data.synthetic import layout
from clipvil.data.synthetic.qa import choice
from clipvil.data.synthetic.refer import NUMBER_WORDS, Desc, count, with_article
from clipvil.data.synthetic.scene import COLORS, SHAPES, Scene, sample_scene
from clipvil.data.synthetic.spec import SPLITS, WorldSpec

NLVR2_SPLIT = {"train": "train", "val": "dev", "test": "test1"}
PAIRS_PER_SET = 4  # NLVR2 sets are eight images, shown as four pairs
SENTENCES_PER_SET = 2  # NLVR2 has at most two sentences per set
CANDIDATES = 12  # random statements tried per sentence slot
KINDS: tuple[str, ...] = ("more", "both", "exactly_one", "neither", "count_side", "total", "same")
ImageUrl = Callable[[Scene], str]


@dataclass(frozen=True)
class Statement:
    """A statement about (left, right): its kind, the objects it counts, and its side / number."""

    kind: str  # one of KINDS
    desc: Desc  # the counted objects (colour and/or shape)
    side: str = "left"  # "more" / "count_side": the image it is about
    n: int = 1  # "count_side" / "total": the number claimed

    def text(self) -> str:
        """The sentence."""
        other = "right" if self.side == "left" else "left"
        some, many = with_article(self.desc.words()), self.desc.words(plural=True)
        exactly = f"exactly {NUMBER_WORDS[self.n]} {self.desc.words(plural=self.n != 1)}"
        return {
            "more": f"The {self.side} image has more {many} than the {other} one.",
            "both": f"Both images contain {some}.",
            "exactly_one": f"Exactly one image contains {some}.",
            "neither": f"Neither image contains {some}.",
            "count_side": f"The {self.side} image contains {exactly}.",
            "total": f"There {'is' if self.n == 1 else 'are'} {exactly} in total.",
            "same": f"Both images contain the same number of {many}.",
        }[self.kind]

    def holds(self, left: Scene, right: Scene) -> bool:
        """Whether the statement is true of the pair."""
        a, b = count(left, self.desc), count(right, self.desc)
        this, that = (a, b) if self.side == "left" else (b, a)
        return {
            "more": this > that,
            "both": a > 0 and b > 0,
            "exactly_one": (a > 0) != (b > 0),
            "neither": a == 0 and b == 0,
            "count_side": this == self.n,
            "total": a + b == self.n,
            "same": a == b,
        }[self.kind]


def _random_desc(scenes: Sequence[Scene], rng: np.random.Generator) -> Desc:
    """Colour and/or shape of an object of the set mostly, any values sometimes (absent objects)."""
    obj = choice(rng, list(choice(rng, list(scenes)).objects))
    color, shape = obj.color, obj.shape
    if rng.random() < 0.2:
        color, shape = choice(rng, list(COLORS)), choice(rng, list(SHAPES))
    mask = choice(rng, [(True, False), (False, True), (True, True)])
    return Desc(color=color if mask[0] else None, shape=shape if mask[1] else None)


def random_statement(scenes: Sequence[Scene], rng: np.random.Generator) -> Statement:
    """One candidate statement about the pairs of a set; claimed numbers are near the real counts."""
    kind = choice(rng, list(KINDS))
    desc = _random_desc(scenes, rng)
    side = choice(rng, ["left", "right"])
    real = count(choice(rng, list(scenes)), desc)
    if kind == "total":
        real += count(choice(rng, list(scenes)), desc)
    n = int(min(len(NUMBER_WORDS) - 1, max(1, real + int(rng.integers(-1, 2)))))
    return Statement(kind, desc, side, n)


def _pairs(scenes: Sequence[Scene]) -> list[list[tuple[Scene, Scene]]]:
    """The sets of a split: up to PAIRS_PER_SET (left, right) pairs of consecutive scenes each."""
    pairs = [(scenes[k], scenes[k + 1]) for k in range(0, len(scenes) - 1, 2)]
    return [pairs[k : k + PAIRS_PER_SET] for k in range(0, len(pairs), PAIRS_PER_SET)]


def _pick(candidates: list[Statement], pairs: list[tuple[Scene, Scene]], running: int) -> Statement:
    """The candidate that brings the running (true - false) count closest to 0, then the most mixed one."""

    def cost(s: Statement) -> tuple[int, int]:
        d = sum(1 if s.holds(a, b) else -1 for a, b in pairs)
        return abs(running + d), abs(d)

    return min(candidates, key=cost)


def default_url(scene: Scene) -> str:
    """The scene's image, relative to the world root (its COCO path)."""
    return layout.coco_image(scene.split, scene.image_id)


def nlvr2_examples(
    scenes: Sequence[Scene],
    rng: np.random.Generator,
    split: str = "dev",
    image_url: ImageUrl = default_url,
) -> list[dict[str, Any]]:
    """The NLVR2 JSON-lines records of one split's scenes (in the given order), labels balanced.

    split: the NLVR2 split name used in the identifiers (train / dev / test1). image_url: the left_url /
    right_url written for a scene (default: its image path relative to the world root). Besides the official
    fields, each record has left_image_id / right_image_id (the scenes' image ids).
    """
    out: list[dict[str, Any]] = []
    running = 0
    for set_id, pairs in enumerate(_pairs(scenes)):
        set_scenes = [s for pair in pairs for s in pair]
        for sentence_id in range(SENTENCES_PER_SET):
            statement = _pick([random_statement(set_scenes, rng) for _ in range(CANDIDATES)], pairs, running)
            for pair_id, (left, right) in enumerate(pairs):
                label = statement.holds(left, right)
                running += 1 if label else -1
                out.append(
                    {
                        "identifier": f"{split}-{set_id}-{pair_id}-{sentence_id}",
                        "sentence": statement.text(),
                        "label": "True" if label else "False",
                        "left_url": image_url(left),
                        "right_url": image_url(right),
                        "writer": "synthetic",
                        "left_image_id": left.image_id,
                        "right_image_id": right.image_id,
                    }
                )
    return out


def write_nlvr2(
    scenes: Sequence[Scene],
    path: str | Path,
    rng: np.random.Generator,
    split: str = "dev",
    image_url: ImageUrl = default_url,
) -> int:
    """Writes `nlvr2_examples` to `path` as JSON lines; returns the number of examples."""
    records = nlvr2_examples(scenes, rng, split, image_url)
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    with p.open("w", encoding="utf-8") as f:
        for rec in records:
            f.write(json.dumps(rec) + "\n")
    return len(records)


def nlvr2_file(split: str) -> str:
    """Where a world's NLVR2 file of our split `split` lives, relative to the root: nlvr2/<NLVR2 split>.json."""
    return f"nlvr2/{NLVR2_SPLIT[split]}.json"


def write_nlvr2_world(spec: WorldSpec, root: str | Path) -> dict[str, int]:
    """The NLVR2 files of a whole world (scenes re-sampled from `spec`, no pixels): {split: examples}.

    Deterministic in `spec`: each split draws from its own stream, seeded by the spec's seed and the
    split's first image id.
    """
    sizes = spec.split_sizes()
    first, counts = 1, {}
    for split in SPLITS:
        ids = range(first, first + sizes[split])
        first += sizes[split]
        if not ids:
            continue
        rng = np.random.default_rng([spec.seed, ids[0], int.from_bytes(b"nlvr2", "little")])
        scenes = [sample_scene(spec, i) for i in ids]
        counts[split] = write_nlvr2(scenes, Path(root) / nlvr2_file(split), rng, NLVR2_SPLIT[split])
    return counts


__all__ = [
    "KINDS",
    "NLVR2_SPLIT",
    "Statement",
    "default_url",
    "nlvr2_examples",
    "nlvr2_file",
    "random_statement",
    "write_nlvr2",
    "write_nlvr2_world",
]
