"""RefCOCO-family readers: official refs pickle + instances.json, the JSON form, the synthetic world's refs."""

from __future__ import annotations

import json
import os
import pickle
from itertools import combinations
from pathlib import Path

import pytest

from clipvil.data.refer import (
    RefExample,
    load_plain_pickle,
    read_refer,
    read_refer_json,
    read_synthetic_refs,
    refer_files,
)
from clipvil.data.synthetic import make_data
from clipvil.data.validate import DataFormatError


def _official(tmp_path: Path) -> tuple[Path, Path]:
    """A refcoco-like data root in lichengunc/refer's layout: refs(unc).p (protocol 2) + instances.json."""
    folder = tmp_path / "refcoco"
    folder.mkdir()
    refs = [
        {"sent_ids": [0, 1], "file_name": "COCO_train2014_000000581857_16.jpg", "ann_id": 1719310, "ref_id": 0,
         "image_id": 581857, "split": "train", "category_id": 1,
         "sentences": [{"tokens": ["the", "lady"], "raw": "THE LADY", "sent_id": 0, "sent": "the lady"},
                       {"tokens": ["woman", "left"], "raw": "woman left", "sent_id": 1, "sent": "woman left"}]},
        {"sent_ids": [2], "file_name": "COCO_train2014_000000000042_7.jpg", "ann_id": 7, "ref_id": 5,
         "image_id": 42, "split": "testB", "category_id": 18,
         "sentences": [{"tokens": ["dog"], "raw": "Dog!", "sent_id": 2, "sent": "dog"}]},
        {"sent_ids": [3], "file_name": "COCO_train2014_000000000042_8.jpg", "ann_id": 8, "ref_id": 6,
         "image_id": 42, "split": "val", "category_id": 1,
         "sentences": [{"tokens": ["man"], "raw": "man", "sent_id": 3, "sent": "man"}]},
    ]
    instances = {
        "images": [{"id": 581857, "file_name": "COCO_train2014_000000581857.jpg", "height": 480, "width": 640},
                   {"id": 42, "file_name": "COCO_train2014_000000000042.jpg", "height": 300, "width": 400}],
        "annotations": [{"id": 1719310, "image_id": 581857, "bbox": [103.93, 299.99, 238.15, 477.41],
                         "category_id": 1, "area": 1.0, "iscrowd": 0, "segmentation": [[0, 0, 1, 1]]},
                        {"id": 7, "image_id": 42, "bbox": [1, 2, 30, 40], "category_id": 18},
                        {"id": 8, "image_id": 42, "bbox": [5.5, 6, 7, 8], "category_id": 1}],
        "categories": [{"id": 1, "name": "person"}, {"id": 18, "name": "dog"}],
    }
    (folder / "refs(unc).p").write_bytes(pickle.dumps(refs, protocol=2))
    (folder / "instances.json").write_text(json.dumps(instances))
    return refer_files(tmp_path, "refcoco")


def test_official_pickle_round_trips(tmp_path: Path) -> None:
    refs_path, instances_path = _official(tmp_path)
    assert refs_path.name == "refs(unc).p" and instances_path.name == "instances.json"
    got = read_refer(refs_path, instances_path)
    assert got == [
        RefExample(0, 581857, "COCO_train2014_000000581857.jpg", "train", ["the lady", "woman left"],
                   (103.93, 299.99, 238.15, 477.41), 1),
        RefExample(5, 42, "COCO_train2014_000000000042.jpg", "testB", ["dog"], (1.0, 2.0, 30.0, 40.0), 18),
        RefExample(6, 42, "COCO_train2014_000000000042.jpg", "val", ["man"], (5.5, 6.0, 7.0, 8.0), 1),
    ]
    assert [r.ref_id for r in read_refer(refs_path, instances_path, splits=["testB", "val"])] == [5, 6]
    assert read_refer(refs_path, instances_path, splits=["testA"]) == []
    with pytest.raises(ValueError, match="unknown ref split"):
        read_refer(refs_path, instances_path, splits=["dev"])


def test_python2_protocol2_strings_decode_as_latin1(tmp_path: Path) -> None:
    # {'key': 'caf\xe9'} as Python 2 pickles a dict of two byte strings: PROTO 2, EMPTY_DICT, SHORT_BINSTRINGs
    path = tmp_path / "py2.p"
    path.write_bytes(b"\x80\x02}q\x00U\x03keyq\x01U\x04caf\xe9q\x02s.")
    assert load_plain_pickle(path) == {"key": "café"}


class _Evil:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (os.system, (f"touch {self.marker}",))


def test_malicious_pickle_is_refused_and_nothing_runs(tmp_path: Path) -> None:
    refs_path, instances_path = _official(tmp_path)
    marker = tmp_path / "pwned"
    refs_path.write_bytes(pickle.dumps([{"ref_id": 0, "payload": _Evil(marker)}], protocol=2))
    with pytest.raises(DataFormatError, match=r"refs\(unc\)\.p: refused to unpickle global (posix|os|nt)\.system"):
        read_refer(refs_path, instances_path)
    assert not marker.exists()
    refs_path.write_bytes(pickle.dumps({"a": {1, 2}}, protocol=2))  # a set needs builtins.set: refused too
    with pytest.raises(DataFormatError, match=r"global (__builtin__|builtins)\.set"):
        load_plain_pickle(refs_path)
    refs_path.write_bytes(b"\x80\x02]q\x00")  # truncated
    with pytest.raises(DataFormatError, match="not a readable pickle"):
        load_plain_pickle(refs_path)
    with pytest.raises(FileNotFoundError):
        load_plain_pickle(tmp_path / "absent.p")


def test_official_errors_name_file_and_ref(tmp_path: Path) -> None:
    refs_path, instances_path = _official(tmp_path)
    refs = load_plain_pickle(refs_path)
    refs[1]["ann_id"] = 999
    refs_path.write_bytes(pickle.dumps(refs, protocol=2))
    with pytest.raises(DataFormatError, match=r"refs\(unc\)\.p: ref 5: annotation 999 is not in"):
        read_refer(refs_path, instances_path)
    refs[1]["ann_id"], refs[2]["ref_id"] = 7, 5
    refs_path.write_bytes(pickle.dumps(refs, protocol=2))
    with pytest.raises(DataFormatError, match="ref 5: duplicate ref id 5"):
        read_refer(refs_path, instances_path)
    refs[2]["ref_id"], refs[2]["split"] = 6, "minival"
    refs_path.write_bytes(pickle.dumps(refs, protocol=2))
    with pytest.raises(DataFormatError, match="ref 6: unknown split 'minival'"):
        read_refer(refs_path, instances_path)


def test_json_form(tmp_path: Path) -> None:
    records = [
        {"ref_id": 3, "image_id": 9, "split": "testA", "category_id": 2, "bbox": [1, 2, 3, 4],
         "sentences": ["left zebra", "zebra on the left"]},
        {"ref_id": 4, "image_id": 9, "split": "train", "category_id": 2, "bbox": [10, 20, 30, 0],
         "file_name": "COCO_train2014_000000000009_55.jpg", "sentences": [{"sent": "right zebra", "raw": "x"}]},
    ]
    path = tmp_path / "refs.json"
    path.write_text(json.dumps(records))
    expected = [
        RefExample(3, 9, "COCO_train2014_000000000009.jpg", "testA", ["left zebra", "zebra on the left"],
                   (1.0, 2.0, 3.0, 4.0), 2),
        RefExample(4, 9, "COCO_train2014_000000000009.jpg", "train", ["right zebra"], (10.0, 20.0, 30.0, 0.0), 2),
    ]
    assert read_refer_json(path) == expected
    path.write_text(json.dumps({"refs": records}))
    assert read_refer_json(path, splits=["train"]) == expected[1:]
    by_split = {"testA": [dict(records[0], split="testA")], "train": [{k: v for k, v in records[1].items()
                                                                       if k != "split"}]}
    path.write_text(json.dumps(by_split))
    assert read_refer_json(path) == expected
    by_split["train"][0]["split"] = "val"
    path.write_text(json.dumps(by_split))
    with pytest.raises(DataFormatError, match="ref 4: split 'val' differs from its enclosing key 'train'"):
        read_refer_json(path)
    path.write_text(json.dumps([dict(records[0], sentences=[])]))
    with pytest.raises(DataFormatError, match="refs.json: ref 3: no sentences"):
        read_refer_json(path)
    path.write_text(json.dumps([dict(records[0], bbox=[1, 2, 3])]))
    with pytest.raises(DataFormatError, match=r"ref 3: bbox must be \[x, y, w, h\]"):
        read_refer_json(path)


def _matches(words: list[str], obj: dict) -> bool:
    """Whether 'the [size] [colour] shape|object' (split into words) describes the scene object."""
    *attrs, head = words[1:]
    return words[0] == "the" and (head == "object" or head == obj["shape"]) and all(
        a in (obj["size"], obj["color"]) for a in attrs
    )


def test_synthetic_world_refs(tmp_path: Path) -> None:
    world = make_data(tmp_path / "world", 12, seed=1, workers=1, progress=False, image_size=64)
    refs = read_synthetic_refs(world.root)
    scenes = {}
    for split in world.splits:
        for sc in json.loads(world.path("scenes", split).read_text())["scenes"]:
            scenes[sc["image_id"]] = sc
    by_id = {r.ref_id: r for r in refs}
    assert len(by_id) == len(refs) > 0
    for sc in scenes.values():
        for obj in sc["objects"]:
            # every unique 'the ...' description of this object, enumerated independently
            heads = [[obj["shape"]], ["object"]]
            options = [
                ["the", *(obj[a] for a in attrs), *head]
                for head in heads
                for k in range(3)
                for attrs in combinations(("size", "color"), k)
                if (head != ["object"] or k > 0)
            ]
            unique = {" ".join(o) for o in options if sum(_matches(o, other) for other in sc["objects"]) == 1}
            if not unique:
                assert obj["obj_id"] not in by_id
                continue
            ref = by_id[obj["obj_id"]]
            assert set(ref.sentences) == unique
            assert ref.image_id == sc["image_id"] and ref.split == sc["split"]
            assert ref.box_xywh == tuple(obj["bbox"])
            assert (world.root / ref.file_name).is_file()
            assert ref.category_id == ["circle", "square", "triangle", "diamond", "star", "cross"].index(
                obj["shape"]) + 1
            assert len(ref.sentences[0].split()) <= len(ref.sentences[-1].split())  # shortest first
    assert {r.split for r in read_synthetic_refs(world, splits=["val"])} == {"val"}
