"""Multi-label shape / colour targets of the synthetic world, checked against the generator's own scenes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from clipvil.data.image_folder import LabelledImageDataset
from clipvil.data.synthetic import Manifest, make_data
from clipvil.data.synthetic.labels import label_names, read_scene_labels
from clipvil.data.synthetic.scene import sample_scene
from clipvil.data.validate import DataFormatError


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Manifest:
    return make_data(tmp_path_factory.mktemp("tiny"), 20, seed=4, image_size=64, workers=1, progress=False)


def test_label_spaces() -> None:
    assert label_names("shape") == ("circle", "square", "triangle", "diamond", "star", "cross")
    assert label_names("color") == ("red", "orange", "yellow", "green", "blue", "purple", "white", "black")
    assert label_names("attribute") == label_names("shape") + label_names("color")
    objects = label_names("object")
    assert len(objects) == 48 and objects[:2] == ("red circle", "red square") and objects[-1] == "black cross"
    with pytest.raises(ValueError, match="unknown label kind 'size'"):
        label_names("size")


@pytest.mark.parametrize("kind", ["attribute", "object"])
def test_targets_match_the_generated_scenes(tiny: Manifest, kind: str) -> None:
    labels = read_scene_labels(tiny, "train", kind)
    assert labels.multi_label and labels.classes == label_names(kind)
    n_train = tiny.counts["train"]["images"]
    assert labels.targets.shape == (n_train, len(labels.classes))
    for row, image in zip(labels.targets, labels.images, strict=True):
        image_id = int(image.stem.rsplit("_", 1)[1])
        scene = sample_scene(tiny.spec, image_id)  # the generator's truth, not the file
        if kind == "attribute":
            want = {o.shape for o in scene.objects} | {o.color for o in scene.objects}
        else:
            want = {f"{o.color} {o.shape}" for o in scene.objects}
        assert {labels.classes[i] for i in np.flatnonzero(row)} == want
        assert image.is_file()
    assert labels.class_counts().sum() == labels.targets.sum()


def test_reads_from_a_directory_and_every_split(tiny: Manifest) -> None:
    for split in tiny.splits:
        labels = read_scene_labels(tiny.root, split, "shape")
        assert len(labels) == tiny.counts[split]["images"]
        assert all(p.parent == tiny.path("coco_images", split) for p in labels.images)


def test_dataset_gives_pixels_and_multi_hot(tiny: Manifest) -> None:
    labels = read_scene_labels(tiny, "val", "color")
    ds = LabelledImageDataset(labels, lambda im: torch.from_numpy(np.array(im)).permute(2, 0, 1))
    pixels, target = ds[0]
    assert pixels.shape == (3, 64, 64) and target.dtype == torch.float32 and target.shape == (8,)
    torch.testing.assert_close(target, torch.from_numpy(labels.targets[0]))


def test_bad_scene_files_name_the_image(tiny: Manifest, tmp_path: Path) -> None:
    import shutil

    copy = tmp_path / "world"
    shutil.copytree(tiny.root, copy)
    path = copy / tiny.files["scenes/val"]
    data = json.loads(path.read_text())
    first = data["scenes"][0]["image_id"]
    data["scenes"][0]["objects"][1]["color"] = "mauve"
    path.write_text(json.dumps(data))
    with pytest.raises(DataFormatError, match=rf"image {first}: objects\[1\]: unknown colour 'mauve'"):
        read_scene_labels(copy, "val")
    data["scenes"][0]["objects"] = []
    path.write_text(json.dumps(data))
    with pytest.raises(DataFormatError, match=rf"image {first}: scene without objects"):
        read_scene_labels(copy, "val")
    with pytest.raises(KeyError, match="no file 'scenes/dev'"):
        read_scene_labels(copy, "dev")
