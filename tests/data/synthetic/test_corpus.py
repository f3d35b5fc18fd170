"""The pre-training corpus ("the web"): WebDataset shards that the webdataset package itself reads, captions
that are true of their scenes, held-out downstream combinations never shown, resumable and reproducible."""

from __future__ import annotations

import io
import json
import re
import tarfile
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from clipvil.data.synthetic.corpus import CLASSES, CorpusSpec, build_sample, make_corpus
from clipvil.data.synthetic.corpus_captions import NUMBERS, corpus_caption, plural
from clipvil.data.synthetic.corpus_scene import CORPUS_COLORS, CORPUS_SHAPES, HELD_OUT, sample_corpus_scene
from clipvil.data.synthetic.scene import COLORS, SHAPES, stream

SPEC = CorpusSpec(n_images=130, val_images=30, shard_size=50, size=96)


def test_held_out_pairs_are_downstream_pairs_and_never_drawn() -> None:
    assert len(HELD_OUT) == 8
    assert {c for _, c in HELD_OUT} == set(COLORS)  # one per downstream colour
    assert {s for s, _ in HELD_OUT} == set(SHAPES)  # every downstream shape at least once
    seen = Counter()
    for image_id in range(1, 1501):
        for obj in sample_corpus_scene(1000, image_id).objects:
            assert (obj.shape, obj.color) not in HELD_OUT, (image_id, obj)
            seen[obj.shape] += 1
            seen[obj.color] += 1
    # the wider world is really drawn: every shape and colour of the corpus occurs
    assert all(seen[s] > 50 for s in CORPUS_SHAPES) and all(seen[c] > 50 for c in CORPUS_COLORS)


def test_category_is_the_largest_objects_shape() -> None:
    for image_id in range(1, 200):
        scene = sample_corpus_scene(1000, image_id)
        largest = max(o.radius for o in scene.objects)
        assert scene.category in {o.shape for o in scene.objects if o.radius == largest}


def _caption_of(style: str, image_id: int) -> tuple[object, str]:
    for k in range(500):  # draw caption streams until the style comes up
        scene = sample_corpus_scene(1000, image_id)
        got, text = corpus_caption(scene, stream(1000 + k, image_id, "ccaption"))
        if got == style:
            return scene, text
    raise AssertionError(f"style {style} never drawn")


@pytest.mark.parametrize("style", ["sentence", "count_first", "positions", "relation", "tags"])
def test_listing_captions_name_every_object(style: str) -> None:
    for image_id in range(1, 40):
        scene, text = _caption_of(style, image_id)
        for obj in scene.objects:  # type: ignore[attr-defined]
            assert f"{obj.color} {obj.shape}" in text, (text, obj)
        if style == "count_first":
            n = len(scene.objects)  # type: ignore[attr-defined]
            assert re.search(rf"\b{NUMBERS[n]} (shape|object)", text), text


def test_count_captions_are_true() -> None:
    for image_id in range(1, 40):
        scene, text = _caption_of("color_counts", image_id)
        for color, n in Counter(o.color for o in scene.objects).items():  # type: ignore[attr-defined]
            assert f"{NUMBERS[n]} {color} {plural('shape', n)}" in text, text
        scene, text = _caption_of("shape_counts", image_id)
        for shape, n in Counter(o.shape for o in scene.objects).items():  # type: ignore[attr-defined]
            assert f"{NUMBERS[n]} {plural(shape, n)}" in text, text


def test_relation_caption_matches_the_geometry() -> None:
    checked = 0
    for image_id in range(1, 60):
        scene, text = _caption_of("relation", image_id)
        m = re.search(r"(\w+ \w+) (to the left of|to the right of|above|below) an? (?:\w+ )*?(\w+ \w+)"
                      r"(?:,|$| on| in| with| partly)", text)
        if m is None or len(scene.objects) < 2:  # type: ignore[attr-defined]
            continue
        a_all = [o for o in scene.objects if f"{o.color} {o.shape}" == m.group(1)]  # type: ignore[attr-defined]
        b_all = [o for o in scene.objects if f"{o.color} {o.shape}" == m.group(3)]  # type: ignore[attr-defined]
        if len(a_all) != 1 or len(b_all) != 1:
            continue  # two objects alike: the caption relates one of them
        a, b = a_all[0], b_all[0]
        checked += 1
        dx, dy = a.x - b.x, a.y - b.y
        rel = m.group(2)
        if rel in ("to the left of", "to the right of"):
            assert abs(dx) >= abs(dy) and (dx < 0) == (rel == "to the left of"), text
        else:
            assert abs(dy) > abs(dx) and (dy < 0) == (rel == "above"), text
    assert checked > 30


def test_samples_are_deterministic_and_varied() -> None:
    a, b = build_sample(SPEC, 7), build_sample(SPEC, 7)
    assert a == b
    image = Image.open(io.BytesIO(a[0]))
    assert image.size == (96, 96) and image.mode == "RGB"
    pixels = [np.asarray(Image.open(io.BytesIO(build_sample(SPEC, i)[0])), np.float32).mean() for i in range(1, 30)]
    assert np.std(pixels) > 5  # lighting and backdrops vary


def test_spec_is_validated() -> None:
    with pytest.raises(ValueError, match="--val-images"):
        CorpusSpec(n_images=200, val_images=200)
    with pytest.raises(ValueError, match="--size"):
        CorpusSpec(n_images=200, size=10)


def test_shards_are_read_by_webdataset(tmp_path: Path) -> None:
    import webdataset as wds

    manifest = make_corpus(tmp_path / "c", SPEC, workers=1, progress=False)
    assert manifest["splits"]["train"] == {"pattern": "train/web-{000000..000001}.tar", "images": 100, "shards": 2}
    assert manifest["splits"]["val"]["pattern"] == "val/web-000000.tar"
    assert manifest["classes"] == list(CLASSES) and sum(manifest["caption_styles"].values()) == 130
    urls = str(tmp_path / "c" / manifest["splits"]["train"]["pattern"])
    dataset = wds.WebDataset(urls, shardshuffle=False).decode("pil")
    samples = list(dataset.to_tuple("__key__", "jpg", "txt", "cls", "json"))
    assert len(samples) == 100
    key, image, text, cls, record = samples[0]
    assert key == "00000001" and image.size == (96, 96) and text.strip()
    assert CLASSES[int(cls)] == record["category"]
    assert [s[0] for s in samples] == [f"{i:08d}" for i in range(1, 101)]


def test_rerun_resumes_and_rebuilds_only_a_damaged_shard(tmp_path: Path) -> None:
    root = tmp_path / "c"
    make_corpus(root, SPEC, workers=1, progress=False)
    shard = root / "train" / "web-000001.tar"
    good = shard.read_bytes()
    shard.write_bytes(good[: len(good) // 2])  # a kill mid-copy, or a damaged disk
    (root / "corpus.json").unlink()  # as if the run had been killed before finishing
    again = make_corpus(root, SPEC, workers=1, progress=False)
    assert again["shards_built_last_run"] == 1 and shard.read_bytes() == good
    assert make_corpus(root, SPEC, workers=1, progress=False)["shards_built_last_run"] == 1  # complete: reused
    other = make_corpus(tmp_path / "other", SPEC, workers=2, progress=False)
    assert other["shards_sha256"] == again["shards_sha256"]  # byte-identical whatever the worker count


def test_another_spec_or_a_foreign_folder_is_refused(tmp_path: Path) -> None:
    make_corpus(tmp_path / "c", SPEC, workers=1, progress=False)
    with pytest.raises(ValueError, match="other parameters.*seed"):
        make_corpus(tmp_path / "c", CorpusSpec(n_images=130, val_images=30, shard_size=50, size=96, seed=5),
                    workers=1, progress=False)
    (tmp_path / "f").mkdir()
    (tmp_path / "f" / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="not a clipvil corpus"):
        make_corpus(tmp_path / "f", SPEC, workers=1, progress=False)


def test_tar_members_have_fixed_metadata(tmp_path: Path) -> None:
    make_corpus(tmp_path / "c", SPEC, workers=1, progress=False)
    with tarfile.open(tmp_path / "c" / "val" / "web-000000.tar") as tar:
        members = tar.getmembers()
    assert {m.mtime for m in members} == {0}
    assert [m.name.split(".", 1)[1] for m in members[:4]] == ["jpg", "txt", "cls", "json"]
    side = json.loads((tmp_path / "c" / "val" / "web-000000.tar.json").read_text())
    assert side["samples"] == 30 and side["first_id"] == 101
