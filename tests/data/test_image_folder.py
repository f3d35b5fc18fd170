"""ImageNet-style image folders: the same classes and samples as torchvision's ImageFolder, clear errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.datasets import ImageFolder

from clipvil.data.image_folder import LabelledImageDataset, LabelledImages, read_image_folder
from clipvil.encoders.images import ImageDecodeError


def _image(path: Path, value: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (9, 7), (value, 0, 0)).save(path)


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    root = tmp_path / "imagenet"
    _image(root / "n02_dog" / "b.png", 1)
    _image(root / "n02_dog" / "a.JPG", 2)
    _image(root / "n01_cat" / "z.png", 3)
    _image(root / "n01_cat" / "sub" / "y.png", 4)  # nested: still class n01_cat
    (root / "n01_cat" / "notes.txt").write_text("not an image")
    (root / "README").write_text("a file at the top is not a class")
    return root


def test_same_as_torchvision_image_folder(folder: Path) -> None:
    ours = read_image_folder(folder)
    theirs = ImageFolder(str(folder))
    assert list(ours.classes) == theirs.classes == ["n01_cat", "n02_dog"]
    assert [(str(p), int(t)) for p, t in zip(ours.images, ours.targets, strict=True)] == theirs.samples
    assert ours.targets.tolist() == [0, 0, 1, 1] and not ours.multi_label
    assert ours.class_counts().tolist() == [2, 2]


def test_extensions(folder: Path) -> None:
    only_png = read_image_folder(folder, extensions=(".png",))
    assert [p.name for p in only_png.images] == [
        "z.png",
        "y.png",
        "b.png",
    ]  # torchvision: a folder's files, then its sub-folders


def test_errors(tmp_path: Path, folder: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nope: no such image folder"):
        read_image_folder(tmp_path / "nope")
    (folder / "n03_empty").mkdir()
    with pytest.raises(FileNotFoundError, match=r"imagenet: Found no valid file for the classes n03_empty"):
        read_image_folder(folder)
    flat = tmp_path / "flat"
    _image(flat / "x.png", 0)
    with pytest.raises(FileNotFoundError, match=r"flat: Couldn't find any class folder"):
        read_image_folder(flat)
    with pytest.raises(ValueError, match=r"targets of shape \(3,\) for 2 images"):
        LabelledImages(tmp_path, ("a",), [tmp_path, tmp_path], np.zeros(3, dtype=np.int64))


def test_dataset(folder: Path) -> None:
    labelled = read_image_folder(folder)
    ds = LabelledImageDataset(labelled, lambda im: torch.from_numpy(np.asarray(im).copy()).permute(2, 0, 1))
    pixels, target = ds[2]  # n02_dog/a.JPG (red 2)
    assert pixels.shape == (3, 7, 9) and int(pixels[0, 0, 0]) == 2
    assert target.dtype == torch.int64 and int(target) == 1
    labelled.images[0].unlink()
    with pytest.raises(ImageDecodeError, match=r"z\.png: missing file \(image 0 of .*imagenet\)"):
        ds[0]
