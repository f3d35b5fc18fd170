"""Labelled images for classifier training and zero-shot classification: an ImageNet-style image folder
(one sub-folder per class) read with torchvision's rules, and the dataset of (pixels, target) pairs.

`read_image_folder` follows ``torchvision.datasets.ImageFolder`` exactly (class = sub-folder name, classes in
sorted order, files found recursively with torchvision's image extensions, sorted within a class) — so a
class index here is the index torchvision and timm's ImageNet tools give. Targets are class indices [N].
Multi-label sets (the synthetic world's shapes and colours, `clipvil.data.synthetic.labels`) hold multi-hot
targets [N, C] in the same `LabelledImages`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from clipvil.data.shards import TarMember
from clipvil.data.validate import PathLike
from clipvil.encoders.images import ImageDecodeError, load_image


@dataclass
class LabelledImages:
    """Images and their labels over `classes`: targets [N] class indices, or [N, C] multi-hot (0/1 floats)."""

    source: Path  # the folder or file the labels were read from
    classes: tuple[str, ...]
    images: list[Path] | list[TarMember]  # files, or samples inside WebDataset shards
    targets: np.ndarray  # [N] int64 | [N, C] float32

    def __post_init__(self) -> None:
        n, c = len(self.images), len(self.classes)
        if self.targets.shape not in ((n,), (n, c)):
            raise ValueError(
                f"{self.source}: targets of shape {self.targets.shape} for {n} images, {c} classes"
            )

    def __len__(self) -> int:
        return len(self.images)

    @property
    def multi_label(self) -> bool:
        """True when targets are multi-hot [N, C] (train with BCE), False for class indices [N] (CE)."""
        return self.targets.ndim == 2

    def class_counts(self) -> np.ndarray:
        """[C] images per class (an image counts once for each of its labels when multi-label)."""
        if self.multi_label:
            return self.targets.sum(axis=0).astype(np.int64)
        return np.bincount(self.targets, minlength=len(self.classes))


def read_image_folder(root: PathLike, extensions: Sequence[str] | None = None) -> LabelledImages:
    """``root/<class>/**/<image>`` -> `LabelledImages` with class-index targets, as torchvision's ImageFolder.

    extensions: file endings to keep (default torchvision's IMG_EXTENSIONS: .jpg .jpeg .png .ppm .bmp .pgm
    .tif .tiff .webp, any case). Errors: a missing root, no class folder, a class folder without images.
    """
    from torchvision.datasets.folder import IMG_EXTENSIONS, find_classes, make_dataset

    path = Path(root)
    if not path.is_dir():
        raise FileNotFoundError(f"{path}: no such image folder")
    exts = tuple(e.lower() for e in (extensions if extensions is not None else IMG_EXTENSIONS))
    try:
        classes, class_to_idx = find_classes(str(path))
        samples = make_dataset(str(path), class_to_idx, extensions=exts)
    except FileNotFoundError as err:
        raise FileNotFoundError(f"{path}: {err}") from None
    images = [Path(file) for file, _ in samples]
    targets = np.asarray([idx for _, idx in samples], dtype=np.int64)  # [N]
    return LabelledImages(path, tuple(classes), images, targets)


Transform = Callable[[Image.Image], torch.Tensor]


class LabelledImageDataset(Dataset):
    """Map-style dataset of (pixels [3, H, W], target) — target an int64 scalar or a float32 [C] multi-hot."""

    def __init__(self, labelled: LabelledImages, transform: Transform) -> None:
        self.labelled, self.transform = labelled, transform
        self.targets = torch.from_numpy(np.ascontiguousarray(labelled.targets))  # [N] | [N, C]

    def __len__(self) -> int:
        return len(self.labelled)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        where = self.labelled.images[index]
        try:
            image = where.read_image() if isinstance(where, TarMember) else load_image(where)
        except ImageDecodeError as err:
            raise ImageDecodeError(f"{err} (image {index} of {self.labelled.source})") from None
        return self.transform(image), self.targets[index]  # [3, H, W], [] | [C]


__all__ = ["LabelledImageDataset", "LabelledImages", "read_image_folder"]
