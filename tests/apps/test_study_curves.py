"""`clipvil study` with `sizes`: data-efficiency curves — nested subsets of each adapter's training items, cells
per (encoder, size, seed), more epochs for small subsets, and the curves as a table and a plot."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from PIL import Image

from clipvil.apps.study import load_study, run_study
from clipvil.apps.study_tasks import ADAPTERS, nested_choice
from clipvil.data.synthetic import make_data

REPO = Path(__file__).resolve().parents[2]
CELL = ["train.batch_size=16", "train.tensorboard=false", "train.log_every=1", "train.epochs=1",
        "task.model_overrides.hidden=32", "task.model_overrides.ff=64", "task.model_overrides.flat_mlp=32",
        "task.model_overrides.flat_out=64", "task.model_overrides.layers=1"]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("world") / "world"
    make_data(root, 30, seed=2, progress=False)
    return root


def test_subsets_are_nested_and_seeded() -> None:
    small, large = nested_choice(100, 10, 0, "questions"), nested_choice(100, 40, 0, "questions")
    assert set(small) <= set(large) and len(set(large)) == 40 and small == sorted(small)
    assert nested_choice(100, 10, 1, "questions") != small  # another subset seed, another subset
    with pytest.raises(ValueError, match="size 101: the world has 100 training questions"):
        nested_choice(100, 101, 0, "questions")


def test_a_vqa_subset_keeps_n_questions_with_their_annotations_and_the_whole_validation(world: Path,
                                                                                        tmp_path: Path) -> None:
    sub = ADAPTERS["vqa"].subset(world, 25, 0, tmp_path / "n25")
    vqa = sub.root / "vqa"
    questions = json.loads((vqa / "v2_OpenEnded_mscoco_train2014_questions.json").read_text())["questions"]
    annotations = json.loads((vqa / "v2_mscoco_train2014_annotations.json").read_text())["annotations"]
    full = json.loads((world / "vqa" / "v2_OpenEnded_mscoco_train2014_questions.json").read_text())["questions"]
    assert len(questions) == 25 == sub.items == sub.examples and len(full) > 25
    assert sorted(a["question_id"] for a in annotations) == sorted(q["question_id"] for q in questions)
    assert all(q in full for q in questions)
    val = "v2_mscoco_val2014_annotations.json"
    assert (vqa / val).read_bytes() == (world / "vqa" / val).read_bytes()  # evaluation data: the whole world's
    assert (sub.root / "coco").resolve() == (world / "coco").resolve()


def test_a_caption_subset_keeps_n_training_images_and_every_evaluation_image(world: Path, tmp_path: Path) -> None:
    sub = ADAPTERS["caption"].subset(world, 7, 0, tmp_path / "n7")
    images = json.loads((sub.root / "captions" / "dataset_coco.json").read_text())["images"]
    full = json.loads((world / "captions" / "dataset_coco.json").read_text())["images"]
    assert sum(im["split"] == "train" for im in images) == 7 == sub.items
    assert [im for im in images if im["split"] != "train"] == [im for im in full if im["split"] != "train"]


def test_a_navigation_subset_counts_paths_and_iterates_their_instructions(tmp_path: Path) -> None:
    world = tmp_path / "nav"
    world.mkdir()
    paths = [{"path_id": i, "instructions": ["a", "b", "c"][: 1 + i % 3]} for i in range(12)]
    (world / "R2R_train.json").write_text(json.dumps(paths))
    (world / "R2R_val_seen.json").write_text("[]")
    (world / "connectivity").mkdir()
    sub = ADAPTERS["vln"].subset(world, 5, 0, tmp_path / "n5")
    kept = json.loads((sub.root / "R2R_train.json").read_text())
    assert len(kept) == 5 and sub.examples == sum(len(p["instructions"]) for p in kept)
    assert (sub.root / "connectivity").is_symlink() and (sub.root / "R2R_val_seen.json").is_symlink()
    with pytest.raises(ValueError, match="size 13: the world has 12 training paths"):
        ADAPTERS["vln"].subset(world, 13, 0, tmp_path / "n13")


def _curve_study(tmp_path: Path, **changes: object) -> Path:
    cfg = {"out": str(tmp_path / "out"), "world": {"images": 30, "seed": 2}, "adapter": "vqa",
           "recipe": str(REPO / "configs/demo/mcan_synthetic.yaml"), "overrides": CELL, "preset": "native",
           "seeds": [0, 1], "sizes": [20, 80], "min_updates": 4,
           "encoders": [{"name": "rand", "encoder": "clipvil-vit-tiny"},
                        {"name": "clip", "encoder": "clipvil-vit-tiny", "weights": "clip-vit-tiny"}], **changes}
    path = tmp_path / "curves.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_a_data_efficiency_study_trains_every_encoder_at_every_size_and_draws_the_curves(tmp_path: Path) -> None:
    report = run_study(_curve_study(tmp_path))
    out = tmp_path / "out"
    assert [(r["encoder"], r["size"]) for r in report["rows"]] == [("rand", 20), ("clip", 20), ("rand", 80),
                                                                    ("clip", 80)]
    assert report["unit"] == "questions"
    for size, epochs in ((20, 4), (80, 1)):  # 20 questions at batch 16: 1 full batch an epoch, 4 epochs for 4
        cell = yaml.safe_load((out / "cells" / "rand" / f"n{size}" / "seed0" / "config.yaml").read_text())
        assert cell["train"]["epochs"] == epochs  # 80: 5 updates in the recipe's one epoch
        assert cell["task"]["data_dir"] == str(out / "subsets" / f"n{size}" / "vqa")
        record = json.loads((out / "cells" / "rand" / f"n{size}" / "seed1.json").read_text())
        assert record["size"] == size and 0.0 <= record["metrics"]["overall"] <= 100.0
        logged = [json.loads(x) for x in (out / "cells" / "rand" / f"n{size}" / "seed0" / "logs" /
                                          "train.jsonl").read_text().splitlines()]
        assert max(r["step"] for r in logged if r.get("phase") == "train") >= 4  # at least min_updates
    table = (out / "study.md").read_text().splitlines()
    assert table[2] == "| encoder | family | accuracy @ 20 questions | accuracy @ 80 questions |"
    assert table[4].startswith("| rand | clip-vit | ") and table[5].startswith("| clip | clip-vit | ")
    with Image.open(out / "study.png") as png:
        assert png.size[0] > 400 and png.size[1] > 300


def test_bad_sizes_are_named_before_any_work(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"sizes must be distinct positive numbers of training questions, got \[0"):
        load_study(_curve_study(tmp_path, sizes=[0, 10]))
    with pytest.raises(ValueError, match="min_updates must be >= 0"):
        load_study(_curve_study(tmp_path, min_updates=-1))
    with pytest.raises(ValueError, match="size 999: the world has 120 training questions"):
        run_study(_curve_study(tmp_path, sizes=[999]))
    assert not (tmp_path / "out" / "cells").exists()


def test_only_runs_the_named_rows_and_reports_every_finished_cell(tmp_path: Path) -> None:
    config = _curve_study(tmp_path, seeds=[0], sizes=[20])
    with pytest.raises(ValueError, match="--only: no encoder named 'nope' in the study; its encoders: rand, clip"):
        run_study(config, only=["nope"])
    report = run_study(config, only=["clip"])
    assert [r["encoder"] for r in report["rows"]] == ["clip"]
    assert not (tmp_path / "out" / "cells" / "rand").exists()
    finished = (tmp_path / "out" / "cells" / "clip" / "n20" / "seed0.json").stat().st_mtime_ns
    report = run_study(config, only=["rand"])  # the other row, as a second process would
    assert [r["encoder"] for r in report["rows"]] == ["rand", "clip"]
    assert (tmp_path / "out" / "cells" / "clip" / "n20" / "seed0.json").stat().st_mtime_ns == finished
