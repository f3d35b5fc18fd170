"""The generator as a whole: determinism, reproducible subsets, idempotence / refusal, balance, speed."""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from clipvil.data.synthetic import Manifest, WorldSpec, make_data


def files_of(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_parameters_give_identical_bytes_whatever_the_workers(tmp_path: Path) -> None:
    a = make_data(tmp_path / "a", 60, seed=7, workers=1, progress=False)
    b = make_data(tmp_path / "b", 60, seed=7, workers=2, progress=False)
    fa, fb = files_of(a.root), files_of(b.root)
    assert len(fa) > 60 * 3 and fa == fb
    c = make_data(tmp_path / "c", 60, seed=8, workers=1, progress=False)
    assert (
        files_of(c.root)["vqa/v2_mscoco_train2014_annotations.json"]
        != fa["vqa/v2_mscoco_train2014_annotations.json"]
    )


def test_an_image_does_not_depend_on_the_world_size(tmp_path: Path) -> None:
    """Image i is made from its own streams: a smaller world reproduces the same scene and question text."""
    small = make_data(tmp_path / "s", 20, seed=5, workers=1, progress=False, split_fractions=(1.0, 0.0, 0.0))
    large = make_data(tmp_path / "l", 40, seed=5, workers=1, progress=False, split_fractions=(1.0, 0.0, 0.0))
    assert small.splits == ["train"]
    s_scenes = json.loads(small.path("scenes", "train").read_text())["scenes"]
    l_scenes = json.loads(large.path("scenes", "train").read_text())["scenes"][:20]
    assert s_scenes == l_scenes
    img = "COCO_train2014_000000000017.jpg"
    assert (small.path("coco_images", "train") / img).read_bytes() == (
        large.path("coco_images", "train") / img
    ).read_bytes()


def test_rerun_is_a_noop_and_other_parameters_are_refused(tmp_path: Path) -> None:
    root = tmp_path / "w"
    first = make_data(root, 30, seed=1, workers=1, progress=False)
    stamps = {p: p.stat().st_mtime_ns for p in root.rglob("*") if p.is_file()}
    again = make_data(root, 30, seed=1, workers=2, progress=False)
    assert again.to_json() == first.to_json()
    assert {p: p.stat().st_mtime_ns for p in root.rglob("*") if p.is_file()} == stamps
    with pytest.raises(ValueError, match=r"other parameters.*seed: 1 != 2"):
        make_data(root, 30, seed=2, workers=1, progress=False)
    with pytest.raises(ValueError, match=r"difficulty"):
        make_data(root, 30, seed=1, difficulty=0.9, workers=1, progress=False)


def test_interrupted_directory_is_remade_and_foreign_one_refused(tmp_path: Path) -> None:
    root = tmp_path / "w"
    make_data(root, 12, workers=1, progress=False)
    (root / "manifest.json").unlink()  # as if killed before the end
    (root / "vqa" / "stale.json").write_text("{}")
    remade = make_data(root, 12, workers=1, progress=False)
    assert remade.missing() == [] and not (root / "vqa" / "stale.json").exists()
    foreign = tmp_path / "other"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match=r"not empty and not a synthetic world"):
        make_data(foreign, 12, workers=1, progress=False)
    assert (foreign / "notes.txt").read_text() == "mine"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"n_images": 0}, "n_images"),
        ({"n_images": 10, "difficulty": 1.5}, "difficulty"),
        ({"n_images": 10, "split_fractions": (0.5, 0.2, 0.2)}, "sum to 1"),
        ({"n_images": 10, "min_objects": 1}, "min_objects"),
        ({"n_images": 10, "width": 300, "height": 100}, "aspect"),
    ],
)
def test_bad_parameters_are_named(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        WorldSpec(**kwargs)


def test_non_square_images(tmp_path: Path) -> None:
    world = make_data(tmp_path / "w", 10, image_size=(256, 192), workers=1, progress=False)
    for img in json.loads(world.path("captions", "train").read_text())["images"]:
        with Image.open(world.path("coco_images", "train") / img["file_name"]) as im:
            assert im.size == (256, 192) == (img["width"], img["height"])
    for sc in json.loads(world.path("scenes", "train").read_text())["scenes"]:
        for o in sc["objects"]:
            x, y, w, h = o["bbox"]
            assert 0 <= x and 0 <= y and x + w <= 256 and y + h <= 192


def _family_answers(world: Manifest) -> dict[str, Counter]:
    meta = {}
    for split in world.splits:
        for sc in json.loads(world.path("scenes", split).read_text())["scenes"]:
            meta.update({m["question_id"]: m for m in sc["vqa"]})
    out: dict[str, Counter] = defaultdict(Counter)
    for split in ("train", "val"):
        for ann in json.loads(world.path("vqa_annotations", split).read_text())["annotations"]:
            m = meta[ann["question_id"]]
            out[m["family"]][ann["multiple_choice_answer"]] += 1
            out[m["template"]][ann["multiple_choice_answer"]] += 1
    return out


def test_answers_are_balanced(world: Manifest) -> None:
    """Yes/no near 50/50 in each family; no open answer above 40% of its family; every family present."""
    answers = _family_answers(world)
    assert {"colour", "shape", "count", "exist", "spatial", "compare"} <= set(answers)
    for name, counts in answers.items():
        total = sum(counts.values())
        if set(counts) <= {"yes", "no"}:
            lo, hi = (0.38, 0.62) if "." not in name else (0.25, 0.75)  # templates have fewer samples
            assert lo <= counts["yes"] / total <= hi, (name, counts)
        elif "." not in name:
            assert max(counts.values()) / total <= 0.4, (name, counts)


def test_question_text_alone_does_not_give_the_answer(world: Manifest) -> None:
    """The best text-only guess (the most frequent answer of each exact question text, else of its
    template, learnt on train) stays far from what the image allows (every answer is derivable)."""
    answers = _family_answers(world)
    by_text: dict[str, Counter] = defaultdict(Counter)
    text = {}
    for split in ("train", "val"):
        text.update(
            {
                q["question_id"]: q["question"]
                for q in json.loads(world.path("vqa_questions", split).read_text())["questions"]
            }
        )
    for ann in json.loads(world.path("vqa_annotations", "train").read_text())["annotations"]:
        by_text[text[ann["question_id"]]][ann["multiple_choice_answer"]] += 1
    overall = sum((c for k, c in answers.items() if "." not in k), Counter()).most_common(1)[0][0]
    val = json.loads(world.path("vqa_annotations", "val").read_text())["annotations"]
    hits = sum(
        ann["multiple_choice_answer"]
        == (
            by_text[text[ann["question_id"]]].most_common(1)[0][0]
            if text[ann["question_id"]] in by_text
            else overall
        )
        for ann in val
    )
    assert hits / len(val) < 0.45


def test_difficulty_adds_answer_noise(tmp_path: Path) -> None:
    def disagreement(d: float) -> float:
        w = make_data(
            tmp_path / f"d{d}", 40, difficulty=d, workers=1, progress=False, split_fractions=(1, 0, 0)
        )
        anns = json.loads(w.path("vqa_annotations", "train").read_text())["annotations"]
        return sum(a["answer"] != x["multiple_choice_answer"] for x in anns for a in x["answers"]) / (
            10 * len(anns)
        )

    easy, hard = disagreement(0.0), disagreement(1.0)
    assert easy < 0.06 < hard <= 0.3
