"""COCO caption JSON and Karpathy dataset_coco.json readers: real Karpathy test/val references, the tiny
Karpathy fixture, errors and warnings."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from clipvil.data import DataFormatError, coco_image_id, read_coco_captions, read_image_list, read_karpathy


@pytest.mark.parametrize("split", ["test", "val"])
def test_real_karpathy_references(shared_data: Path, split: str) -> None:
    refs = read_coco_captions(shared_data / "coco-caption" / "derived" / f"coco_karpathy_{split}_gt.json")
    listed = read_image_list(shared_data / "karpathy-split" / f"coco_{split}.txt")
    assert len(refs.images) == len(listed) == 5000 and len(refs.captions) == 25010
    # the image set is exactly Karpathy's list, in its order
    assert list(refs.images) == [coco_image_id(name) for name in listed]
    assert list(refs.images.values()) == listed
    per_image = refs.by_image()
    assert Counter(len(c) for c in per_image.values()) == Counter({5: 4990, 6: 10})
    assert refs.warnings == {}


def test_real_test_reference_entry(shared_data: Path) -> None:
    refs = read_coco_captions(shared_data / "coco-caption" / "derived" / "coco_karpathy_test_gt.json")
    first = refs.by_image()[391895]
    assert "A man riding on the back of a motorcycle." in first and len(first) == 5
    with pytest.raises(DataFormatError, match=r"coco_karpathy_test_gt\.json: image 391895: unknown image id"):
        read_coco_captions(
            shared_data / "coco-caption" / "derived" / "coco_karpathy_test_gt.json", image_ids={1}
        )


def test_karpathy_fixture_splits(fixtures_dir: Path) -> None:
    raw = json.loads((fixtures_dir / "dataset_coco.json").read_text())["images"]
    data = read_karpathy(fixtures_dir / "dataset_coco.json")
    assert [im.image_id for im in data.images] == [im["cocoid"] for im in raw]
    assert [im.image_id for im in data.split("test")] == [391895, 60623]
    assert [im.image_id for im in data.split("val")] == [184613]
    assert [im.image_id for im in data.split("train")] == [458752, 262148]  # restval counts as train
    assert data.split("restval") == []
    unmapped = read_karpathy(fixtures_dir / "dataset_coco.json", restval_as_train=False)
    assert [im.image_id for im in unmapped.split("restval")] == [262148]
    assert [im.image_id for im in unmapped.split("train")] == [458752]
    first = data.images[0]
    assert (first.filepath, first.filename, len(first.raw)) == ("val2014", "COCO_val2014_000000391895.jpg", 5)
    assert first.raw[3] == "A man riding on the back of a motorcycle."
    assert first.tokens[3] == ("a", "man", "riding", "on", "the", "back", "of", "a", "motorcycle")
    with pytest.raises(ValueError, match="unknown Karpathy split 'testing'"):
        data.split("testing")


def test_karpathy_fixture_matches_real_references(fixtures_dir: Path, shared_data: Path) -> None:
    refs = read_coco_captions(
        shared_data / "coco-caption" / "derived" / "coco_karpathy_test_gt.json"
    ).by_image()
    for im in read_karpathy(fixtures_dir / "dataset_coco.json").split("test"):
        assert list(im.raw) == refs[im.image_id]


def _karpathy(*images: dict) -> dict:
    return {"dataset": "coco", "images": list(images)}


def _image(cocoid: int = 1, split: str = "train", sentences: list | None = None) -> dict:
    sents = sentences if sentences is not None else [{"raw": "A cat.", "tokens": ["a", "cat"]}]
    return {
        "filepath": "train2014",
        "filename": f"COCO_train2014_{cocoid:012d}.jpg",
        "cocoid": cocoid,
        "split": split,
        "sentences": sents,
    }


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (
            _karpathy(_image(split="dev")),
            "k.json: image 1: unknown split 'dev' (expected one of ('train', 'val', 'test', 'restval'))",
        ),
        (
            _karpathy(_image(), _image()),
            "k.json: image 1: duplicate cocoid 1 (at images[1]; first at images[0])",
        ),
        (_karpathy(_image(sentences=[])), "k.json: image 1: no sentences"),
        (
            _karpathy(_image(sentences=[{"raw": " ", "tokens": []}])),
            "k.json: image 1: sentences[0]: empty caption",
        ),
        (
            _karpathy(_image(sentences=[{"raw": "A cat."}])),
            "k.json: image 1: sentences[0]: missing field 'tokens'",
        ),
        (
            _karpathy({"filepath": "x", "filename": "y", "split": "train", "sentences": []}),
            "k.json: images[0]: missing field 'cocoid'",
        ),
        ({"dataset": "coco"}, "k.json: missing field 'images'"),
    ],
)
def test_karpathy_errors(write_json, content: dict, message: str) -> None:
    path = write_json("k.json", content)
    with pytest.raises(DataFormatError) as info:
        read_karpathy(path)
    assert str(info.value) == f"{path.parent}/{message}"


def test_karpathy_sentence_without_tokens_is_counted(write_json) -> None:
    path = write_json(
        "k.json",
        _karpathy(
            _image(sentences=[{"raw": "...", "tokens": []}, {"raw": "A cat.", "tokens": ["a", "cat"]}])
        ),
    )
    data = read_karpathy(path)
    assert data.warnings == {"sentence with no tokens": 1}
    assert data.images[0].tokens == ((), ("a", "cat"))


def _coco(images: list[int], annotations: list[tuple[int, int, str]]) -> dict:
    return {
        "images": [{"id": i, "file_name": f"COCO_val2014_{i:012d}.jpg"} for i in images],
        "annotations": [{"id": c, "image_id": i, "caption": t} for c, i, t in annotations],
    }


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (_coco([1], [(1, 2, "A dog.")]), "c.json: caption 1: image id 2 is not in the file's images list"),
        (
            _coco([1], [(1, 1, "A dog."), (1, 1, "A cat.")]),
            "c.json: caption 1: duplicate caption id 1 (at annotations[1]; first at annotations[0])",
        ),
        (_coco([1], [(1, 1, "")]), "c.json: caption 1: empty caption"),
        (_coco([1, 1], []), "c.json: image 1: duplicate image id 1 (at images[1]; first at images[0])"),
        ({"images": [{"id": 1}], "annotations": []}, "c.json: image 1: missing field 'file_name'"),
    ],
)
def test_coco_caption_errors(write_json, content: dict, message: str) -> None:
    path = write_json("c.json", content)
    with pytest.raises(DataFormatError) as info:
        read_coco_captions(path)
    assert str(info.value) == f"{path.parent}/{message}"


def test_coco_image_without_captions_is_counted(write_json) -> None:
    refs = read_coco_captions(write_json("c.json", _coco([1, 2], [(1, 1, "A dog.")])))
    assert refs.warnings == {"image without captions": 1}
    assert refs.by_image() == {1: ["A dog."], 2: []}


def test_image_list_duplicates(write_json) -> None:
    path = write_json("list.txt", "COCO_val2014_000000000001.jpg\n\nCOCO_val2014_000000000001.jpg\n")
    with pytest.raises(
        DataFormatError, match=r"list\.txt: line 3: duplicate image 'COCO_val2014_000000000001\.jpg'"
    ):
        read_image_list(path)
