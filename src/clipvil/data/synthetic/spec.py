"""The parameters of one synthetic world (everything that decides the bytes written), and its splits.

A `WorldSpec` is what `manifest.json` records: two runs with equal specs write identical files, so an
existing directory with the same spec is reused and one with a different spec is refused.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any

# Bump when a change to the generator changes any byte of its output: old directories are then refused.
GENERATOR_VERSION = 1

# Our three splits and their name in each official format (COCO/VQA, GQA, SNLI-VE, Karpathy).
SPLITS: tuple[str, ...] = ("train", "val", "test")
COCO_SPLIT = {"train": "train2014", "val": "val2014", "test": "test2015"}
GQA_SPLIT = {"train": "train", "val": "val", "test": "testdev"}
SNLI_VE_SPLIT = {"train": "train", "val": "dev", "test": "test"}
LXMERT_SPLIT = {"train": "mscoco_train", "val": "mscoco_minival"}  # no test entries, as in LXMERT


@dataclass(frozen=True)
class WorldSpec:
    """Everything that decides a synthetic world's files (validated on construction)."""

    n_images: int  # total images over all splits, 1..1_000_000
    seed: int = 0  # master seed; image i uses the streams seeded by (seed, image_id, stream)
    difficulty: float = 0.5  # 0..1: size jitter, background clutter, pixel noise, colour jitter, answer noise
    width: int = 224  # image width in pixels
    height: int = 224  # image height in pixels
    split_fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)  # train / val / test, summing to 1
    min_objects: int = 2  # objects per image are drawn uniformly from [min_objects, max_objects]
    max_objects: int = 6
    questions_per_image: int = 5  # VQA questions per image (and as many GQA questions)
    version: int = GENERATOR_VERSION  # generator version the files were written with

    def __post_init__(self) -> None:
        problems = []
        if not 1 <= self.n_images <= 1_000_000:
            problems.append(f"n_images must be in 1..1000000, got {self.n_images}")
        if not 0.0 <= self.difficulty <= 1.0:
            problems.append(f"difficulty must be in [0, 1], got {self.difficulty}")
        if not (64 <= self.width <= 2048 and 64 <= self.height <= 2048):
            problems.append(f"image size must be 64..2048 pixels a side, got {self.width}x{self.height}")
        if max(self.width, self.height) > 2 * min(self.width, self.height):
            problems.append(f"aspect ratio must be at most 2:1, got {self.width}x{self.height}")
        if len(self.split_fractions) != 3 or any(f < 0 for f in self.split_fractions):
            problems.append(f"split_fractions must be 3 non-negative numbers, got {self.split_fractions}")
        elif not math.isclose(sum(self.split_fractions), 1.0, abs_tol=1e-6) or self.split_fractions[0] == 0:
            problems.append(f"split_fractions must sum to 1 with a train part, got {self.split_fractions}")
        if not 2 <= self.min_objects <= self.max_objects <= 9:
            problems.append(
                f"need 2 <= min_objects <= max_objects <= 9, got {self.min_objects}..{self.max_objects}"
            )
        if not 1 <= self.questions_per_image <= 50:
            problems.append(f"questions_per_image must be in 1..50, got {self.questions_per_image}")
        if problems:
            raise ValueError("WorldSpec: " + "; ".join(problems))

    def split_sizes(self) -> dict[str, int]:
        """Images per split: val and test are rounded down, train gets the rest (so it is never empty)."""
        val = int(self.n_images * self.split_fractions[1])
        test = int(self.n_images * self.split_fractions[2])
        return {"train": self.n_images - val - test, "val": val, "test": test}

    def split_of(self, image_id: int) -> str:
        """The split of image `image_id` (ids run 1..n_images: train first, then val, then test)."""
        sizes = self.split_sizes()
        if image_id <= sizes["train"]:
            return "train"
        return "val" if image_id <= sizes["train"] + sizes["val"] else "test"

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (tuples become lists)."""
        out = asdict(self)
        out["split_fractions"] = list(self.split_fractions)
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any], where: str = "manifest.json") -> WorldSpec:
        """The spec written by `to_json`; a clear error names `where` when a field is missing or unknown."""
        names = {f.name for f in fields(cls)}
        unknown, missing = set(data) - names, {"n_images"} - set(data)
        if unknown or missing:
            raise ValueError(
                f"{where}: spec has unknown fields {sorted(unknown)} / missing {sorted(missing)}"
            )
        values = dict(data)
        if "split_fractions" in values:
            values["split_fractions"] = tuple(values["split_fractions"])
        return cls(**values)

    def differences(self, other: WorldSpec) -> list[str]:
        """'name: mine != theirs' for every field that differs."""
        return [
            f"{f.name}: {getattr(self, f.name)!r} != {getattr(other, f.name)!r}"
            for f in fields(self)
            if getattr(self, f.name) != getattr(other, f.name)
        ]
