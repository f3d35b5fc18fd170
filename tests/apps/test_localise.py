"""`clipvil localise`: probes from a synthetic world's scenes, per-tower pointing game and energy in the box."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from clipvil.apps.explain_cmd import explain_image, load_vqa_head, vqa_scorer
from clipvil.apps.localise import TowerSpec, coco_probes, parse_tower, run_localise, synthetic_probes
from clipvil.cli import main
from clipvil.data.synthetic.scene import COLORS, SHAPES


def _scene_objects(world: Path, split: str) -> dict[int, dict]:
    """obj_id → object record, read straight from the scenes file."""
    scenes = json.loads((world / f"scenes/scenes_{split}2014.json").read_text())["scenes"]
    return {o["obj_id"]: {**o, "image": s} for s in scenes for o in s["objects"]}


def test_synthetic_probes_name_one_object_and_carry_its_box(explain_heads: dict) -> None:
    world = explain_heads["world"]
    probes = synthetic_probes(world, "val")
    objects = _scene_objects(world, "val")
    assert probes and len(probes) <= len(objects)
    boxes = {tuple(o["bbox"]): o for o in objects.values()}
    for p in probes:
        obj = boxes[tuple(p.box_xywh)]  # every probe's box is one object's box from the scenes file
        words = p.caption.split()[1:]
        assert p.image.is_file() and p.caption.startswith("the ")
        assert set(words) <= {obj["shape"], obj["color"], obj["size"], "object"}
        asks_colour = not any(w in COLORS for w in words) or any(w in SHAPES for w in words)
        assert p.question == (f"What color is the {' '.join(words)}?" if asks_colour
                              else f"What shape is the {' '.join(words)}?")
    assert len(synthetic_probes(world, "val", limit=2)) == 2


def _pointing(heat: np.ndarray, box: tuple, size: int) -> bool:
    r, c = np.unravel_index(int(np.argmax(heat)), heat.shape)
    cell = size / heat.shape[0]
    px, py = (c + 0.5) * cell, (r + 0.5) * cell
    return box[0] <= px <= box[0] + box[2] and box[1] <= py <= box[1] + box[3]


def test_run_localise_scores_each_tower_and_writes_table_and_plot(explain_heads: dict, tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    world = explain_heads["world"]
    probes = synthetic_probes(world, "val", limit=5)
    towers = [TowerSpec("RN tiny VQA", "vqa", str(explain_heads["clipvil-rn-tiny"])),
              TowerSpec("ViT tiny VQA", "vqa", str(explain_heads["clipvil-vit-tiny"])),
              parse_tower("clip", "RN tiny CLIP=clipvil-rn-tiny")]
    result = run_localise(towers, probes, tmp_path, n_examples=1)
    rows = result["towers"]
    assert list(rows) == ["RN tiny VQA", "ViT tiny VQA", "RN tiny CLIP"]
    assert [rows[k]["family"] for k in rows] == ["clip-resnet", "clip-vit", "clip-resnet"]
    # the pointing game by hand over the same maps (224 x 224 images: the native crop keeps all of them)
    head = load_vqa_head(explain_heads["clipvil-rn-tiny"])
    hits = [_pointing(explain_image(vqa_scorer(head, p.question), p.image, None).heat, p.box_xywh, 224)
            for p in probes]
    assert rows["RN tiny VQA"]["pointing"] == pytest.approx(100 * np.mean(hits))
    assert all(0 <= r["energy"] <= 100 and r["n"] == 5 for r in rows.values())
    areas = [p.box_xywh[2] * p.box_xywh[3] / 224**2 for p in probes]
    assert result["chance"]["energy"] == pytest.approx(100 * np.mean(areas))
    saved = json.loads((tmp_path / "localisation.json").read_text())
    assert saved["towers"]["ViT tiny VQA"]["energy"] == pytest.approx(rows["ViT tiny VQA"]["energy"])
    table = (tmp_path / "localisation.md").read_text()
    assert "| RN tiny CLIP | clipvil-rn-tiny | clip-resnet | random | CLIP image-text cosine |" in table
    assert (tmp_path / "localisation.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(list((tmp_path / "examples").glob("*.png"))) == 3
    out = tmp_path / "cli"
    assert main(["localise", "--world", str(world), "--limit", "2", "--examples", "0", "--out", str(out),
                 "--vqa", f"rn={explain_heads['clipvil-rn-tiny']}"]) == 0
    assert set(json.loads(capsys.readouterr().out)) == {"rn", "chance"}


def test_coco_probes_take_categories_met_once(tmp_path: Path) -> None:
    instances = {"images": [{"id": 1, "file_name": "a.jpg"}, {"id": 2, "file_name": "b.jpg"}],
                 "categories": [{"id": 1, "name": "dog"}, {"id": 2, "name": "cat"}],
                 "annotations": [{"image_id": 1, "category_id": 1, "bbox": [1, 2, 3, 4]},
                                 {"image_id": 1, "category_id": 2, "bbox": [5, 6, 7, 8]},
                                 {"image_id": 1, "category_id": 2, "bbox": [9, 9, 2, 2]},
                                 {"image_id": 2, "category_id": 2, "bbox": [0, 0, 5, 5], "iscrowd": 1}]}
    path = tmp_path / "instances.json"
    path.write_text(json.dumps(instances))
    probes = coco_probes(path, tmp_path)
    assert [(p.image.name, p.box_xywh, p.question, p.caption) for p in probes] == [
        ("a.jpg", (1.0, 2.0, 3.0, 4.0), "What color is the dog?", "a photo of a dog")]


def test_bad_tower_specs_are_named() -> None:
    with pytest.raises(ValueError, match="expected LABEL=SOURCE"):
        parse_tower("vqa", "no-label")
    with pytest.raises(ValueError, match="tower labels must differ"):
        run_localise([TowerSpec("a", "clip", "RN50"), TowerSpec("a", "clip", "RN50")], [object()], Path("x"))  # type: ignore[list-item]
