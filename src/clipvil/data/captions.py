"""COCO captions: the COCO caption JSON (``captions_*.json``, evaluation references) and Karpathy's
``dataset_coco.json`` (the train / val / test split that captioning papers use).

COCO caption JSON::

    {"images": [{"id": 391895, "file_name": "COCO_val2014_000000391895.jpg", ...}],
     "annotations": [{"image_id": 391895, "id": 1, "caption": "A man with a red helmet ..."}], ...}

Karpathy ``dataset_coco.json``::

    {"dataset": "coco", "images": [{"filepath": "val2014", "filename": "COCO_val2014_000000391895.jpg",
      "cocoid": 391895, "imgid": 0, "split": "test", "sentids": [...],
      "sentences": [{"raw": "A man with a red helmet ...", "tokens": ["a", "man", ...], ...}]}]}

Splits are ``train``, ``val``, ``test`` and ``restval`` (the 30k val2014 images outside Karpathy's val and test);
by convention restval is trained on, so ``restval_as_train=True`` (the default) reports it as ``train``.

Errors (DataFormatError naming file and image / caption): missing or mistyped field, empty caption, duplicate
image id or caption id, a caption of an image that the file does not list, an unknown split name, an image
with no sentences, image id not in the given set. Counted warnings: a listed image without captions (COCO
form), a sentence whose tokens list is empty (Karpathy form).
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path

from clipvil.data.validate import (
    PathLike,
    WarningCounter,
    check_image,
    check_new,
    error,
    get_field,
    load_json,
    no_gc,
)

KARPATHY_SPLITS = ("train", "val", "test", "restval")


@dataclass(slots=True)
class Caption:
    """One reference caption of an image (COCO form)."""

    caption_id: int
    image_id: int
    caption: str


@dataclass
class CocoCaptions:
    """A COCO caption file: image id -> file name (file order), captions in file order, warning counts."""

    file: Path
    images: dict[int, str]
    captions: list[Caption]
    warnings: dict[str, int] = field(default_factory=dict)

    def by_image(self) -> dict[int, list[str]]:
        """Image id -> its captions, images in file order (the references shape the scorers take)."""
        refs: dict[int, list[str]] = {image_id: [] for image_id in self.images}
        for c in self.captions:
            refs[c.image_id].append(c.caption)
        return refs


@dataclass(slots=True)
class KarpathyImage:
    """One image of Karpathy's split with its sentences."""

    image_id: int  # cocoid
    filepath: str  # COCO image folder, e.g. "val2014"
    filename: str  # e.g. "COCO_val2014_000000391895.jpg"
    split: str  # "train" | "val" | "test" (| "restval" when not mapped to train)
    raw: tuple[str, ...]  # the captions as written
    tokens: tuple[tuple[str, ...], ...]  # Karpathy's tokens: lower-case, punctuation removed


@dataclass
class KarpathySplit:
    """Karpathy's dataset file: every image in file order, and the warning counts of the read."""

    file: Path
    images: list[KarpathyImage]
    warnings: dict[str, int] = field(default_factory=dict)

    def split(self, name: str) -> list[KarpathyImage]:
        """The images of one split ("train", "val", "test"; "restval" only when read unmapped)."""
        if name not in KARPATHY_SPLITS:
            raise ValueError(f"unknown Karpathy split {name!r}; expected one of {KARPATHY_SPLITS}")
        return [im for im in self.images if im.split == name]


def read_coco_captions(path: PathLike, image_ids: Collection[int] | None = None) -> CocoCaptions:
    """Reads a COCO caption JSON (images + annotations).

    image_ids: when given, every listed image must be in it.
    """
    p = Path(path)
    warnings = WarningCounter(p)
    with no_gc():
        data = load_json(p)
        images = _coco_images(get_field(data, "images", p, None, list), p, image_ids)
        captions: list[Caption] = []
        seen: dict[int, str] = {}
        for i, ann in enumerate(get_field(data, "annotations", p, None, list)):
            cid = get_field(ann, "id", p, f"annotations[{i}]", int)
            where = f"caption {cid}"
            check_new(seen, cid, p, where, "caption id", f"annotations[{i}]")
            image_id = get_field(ann, "image_id", p, where, int)
            if image_id not in images:
                raise error(p, where, f"image id {image_id} is not in the file's images list")
            text = get_field(ann, "caption", p, where, str)
            if not text.strip():
                raise error(p, where, "empty caption")
            captions.append(Caption(cid, image_id, text))
    with_captions = {c.image_id for c in captions}
    for image_id in images:
        if image_id not in with_captions:
            warnings.add("image without captions", f"image {image_id}")
    return CocoCaptions(p, images, captions, warnings.emit())


def _coco_images(raw: list, path: Path, image_ids: Collection[int] | None) -> dict[int, str]:
    images: dict[int, str] = {}
    seen: dict[int, str] = {}
    for i, im in enumerate(raw):
        image_id = get_field(im, "id", path, f"images[{i}]", int)
        where = f"image {image_id}"
        check_new(seen, image_id, path, where, "image id", f"images[{i}]")
        check_image(image_id, image_ids, path, where)
        images[image_id] = get_field(im, "file_name", path, where, str)
    return images


def read_karpathy(
    path: PathLike,
    restval_as_train: bool = True,
    image_ids: Collection[int] | None = None,
) -> KarpathySplit:
    """Reads Karpathy's ``dataset_coco.json``.

    restval_as_train: report split "restval" as "train" (the convention of captioning papers).
    image_ids: when given, every image's cocoid must be in it.
    """
    p = Path(path)
    warnings = WarningCounter(p)
    seen: dict[int, str] = {}
    images: list[KarpathyImage] = []
    with no_gc():
        data = load_json(p)
        for i, im in enumerate(get_field(data, "images", p, None, list)):
            image_id = get_field(im, "cocoid", p, f"images[{i}]", int)
            where = f"image {image_id}"
            check_new(seen, image_id, p, where, "cocoid", f"images[{i}]")
            check_image(image_id, image_ids, p, where)
            split = get_field(im, "split", p, where, str)
            if split not in KARPATHY_SPLITS:
                raise error(p, where, f"unknown split {split!r} (expected one of {KARPATHY_SPLITS})")
            if split == "restval" and restval_as_train:
                split = "train"
            raw, tokens = _sentences(get_field(im, "sentences", p, where, list), p, where, warnings)
            filepath = get_field(im, "filepath", p, where, str)
            images.append(
                KarpathyImage(
                    image_id, filepath, get_field(im, "filename", p, where, str), split, raw, tokens
                )
            )
    return KarpathySplit(p, images, warnings.emit())


def _sentences(
    sentences: list, path: Path, where: str, warnings: WarningCounter
) -> tuple[tuple[str, ...], tuple[tuple[str, ...], ...]]:
    if not sentences:
        raise error(path, where, "no sentences")
    raw, tokens = [], []
    for j, s in enumerate(sentences):
        at = f"{where}: sentences[{j}]"
        text = get_field(s, "raw", path, at, str)
        if not text.strip():
            raise error(path, at, "empty caption")
        toks = get_field(s, "tokens", path, at, list)
        if not all(type(t) is str for t in toks):
            raise error(path, at, "tokens must be a list of strings")
        if not toks:
            warnings.add("sentence with no tokens", at)
        raw.append(text)
        tokens.append(tuple(toks))
    return tuple(raw), tuple(tokens)


def read_image_list(path: PathLike) -> list[str]:
    """The image file names of a split list (one a line, e.g. ``karpathy-split/coco_test.txt``), in order."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"{p}: no such file")
    names: list[str] = []
    seen: dict[str, str] = {}
    for lineno, line in enumerate(p.read_text(encoding="utf-8").splitlines(), start=1):
        name = line.strip()
        if name:
            check_new(seen, name, p, f"line {lineno}", "image", f"line {lineno}")
            names.append(name)
    return names


__all__ = [
    "KARPATHY_SPLITS",
    "Caption",
    "CocoCaptions",
    "KarpathyImage",
    "KarpathySplit",
    "read_coco_captions",
    "read_image_list",
    "read_karpathy",
]
