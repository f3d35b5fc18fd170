"""Image–caption pairs for contrastive CLIP training and retrieval evaluation, from the files users hold.

Sources (each reader returns `ImageTextPairs`: the pairs in file order, every image resolved to a path):

- COCO caption JSON (``captions_train2014.json``): `coco_caption_pairs` (through `read_coco_captions`);
- Karpathy's ``dataset_coco.json`` with split selection: `karpathy_pairs` (through `read_karpathy`);
- the captions of the LXMERT pre-training files (``mscoco_train.json``, ``vgnococo.json`` ...):
  `lxmert_caption_pairs` (through `read_lxmert`; its QA sentences are not captions and are left out);
- CSV / TSV with an image-path column and a caption column, as open_clip's ``CsvDataset`` reads them
  (defaults: columns ``filepath`` and ``title``, tab-separated — open_clip's ``--csv-*`` defaults):
  `csv_pairs`.

WebDataset tar shards are in `clipvil.data.shards`. `ImageTextDataset` turns pairs into (pixels, token ids)
with the transform and tokenizer of the CLIP being trained (open_clip's ``preprocess_train`` and
``get_tokenizer(name)``). Errors (`DataFormatError`) name the file and the line or entry; an image that
cannot be decoded raises `ImageDecodeError` naming the image file and the entry it came from.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from PIL import Image
from torch.utils.data import Dataset

from clipvil.data.captions import read_coco_captions, read_karpathy
from clipvil.data.lxmert import LxmertAnswerTable, read_lxmert
from clipvil.data.validate import PathLike, error
from clipvil.encoders.images import ImageDecodeError, load_image

CSV_IMAGE_KEY = "filepath"  # open_clip's --csv-img-key default
CSV_CAPTION_KEY = "title"  # open_clip's --csv-caption-key default
CSV_SEPARATOR = "\t"  # open_clip's --csv-separator default
LXMERT_CAPTION_SOURCES = ("mscoco", "vg")  # the caption sources of LXMERT's files (the rest are QA)


@dataclass(frozen=True, slots=True)
class ImageText:
    """One image file and one of its captions."""

    image: Path  # the image file (not checked to exist at read time; decoding names it when missing)
    caption: str
    image_key: str  # identifies the image within its source: COCO id, img_id, or the path as written
    entry: str  # where in the source file the pair comes from, e.g. "line 12" or "image 391895: caption 3"


@dataclass
class ImageTextPairs:
    """The pairs read from `files`, in file order, and the warning counts of the read."""

    files: tuple[Path, ...]
    pairs: list[ImageText]
    warnings: dict[str, int] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.pairs)

    def retrieval_index(self) -> tuple[list[Path], list[str], list[int]]:
        """(images in order of first appearance, captions in pair order, caption -> image position):
        the inputs of `clipvil.metrics.retrieval.retrieval_recalls` (COCO / Flickr: 5 captions an image)."""
        position: dict[str, int] = {}
        images: list[Path] = []
        text_to_image: list[int] = []
        for p in self.pairs:
            if p.image_key not in position:
                position[p.image_key] = len(images)
                images.append(p.image)
            text_to_image.append(position[p.image_key])
        return images, [p.caption for p in self.pairs], text_to_image


def coco_caption_pairs(
    path: PathLike, image_root: PathLike, image_ids: Collection[int] | None = None
) -> ImageTextPairs:
    """Every caption of a COCO caption JSON; image = `image_root` / file_name (e.g. the val2014 folder)."""
    coco = read_coco_captions(path, image_ids)
    root = Path(image_root)
    pairs = [
        ImageText(
            root / coco.images[c.image_id],
            c.caption,
            str(c.image_id),
            f"image {c.image_id}: caption {c.caption_id}",
        )
        for c in coco.captions
    ]
    return ImageTextPairs((coco.file,), pairs, coco.warnings)


def karpathy_pairs(
    path: PathLike,
    image_root: PathLike,
    splits: Sequence[str] = ("train",),
    restval_as_train: bool = True,
) -> ImageTextPairs:
    """The raw sentences of the images of `splits` in Karpathy's ``dataset_coco.json``;
    image = `image_root` / filepath / filename (image_root holds train2014/ and val2014/).

    With `restval_as_train` (the default) "restval" images count as "train" (and "restval" cannot be
    asked for).
    """
    data = read_karpathy(path, restval_as_train=restval_as_train)
    wanted = set(splits)
    if not wanted:
        raise ValueError(f"{data.file}: no split asked for")
    for s in wanted:
        data.split(s)  # raises ValueError naming an unknown split
    if restval_as_train and "restval" in wanted:
        raise ValueError(f"{data.file}: split 'restval' is read as 'train' (pass restval_as_train=False)")
    root = Path(image_root)
    pairs = [
        ImageText(
            root / im.filepath / im.filename, raw, str(im.image_id), f"image {im.image_id}: sentences[{j}]"
        )
        for im in data.images
        if im.split in wanted
        for j, raw in enumerate(im.raw)
    ]
    return ImageTextPairs((data.file,), pairs, data.warnings)


def lxmert_image_path(image_root: Path, image_id: str) -> Path:
    """Where an LXMERT img_id's picture lives: COCO ids ("COCO_train2014_000000000042") in their split
    folder, image_root/train2014/COCO_train2014_000000000042.jpg; other ids (Visual Genome)
    image_root/<id>.jpg."""
    parts = image_id.split("_")
    if len(parts) == 3 and parts[0] == "COCO":
        return image_root / parts[1] / f"{image_id}.jpg"
    return image_root / f"{image_id}.jpg"


def lxmert_caption_pairs(
    paths: PathLike | Sequence[PathLike],
    image_root: PathLike,
    answer_table: LxmertAnswerTable | None = None,
    sources: Collection[str] = LXMERT_CAPTION_SOURCES,
    image_path: Callable[[Path, str], Path] = lxmert_image_path,
) -> ImageTextPairs:
    """The caption sentences (sources `sources`, unlabelled) of LXMERT pre-training files.

    answer_table: only used to validate the QA labels of the files; None reads them against an empty
        table (every label answer is then dropped and counted in the warnings — harmless, captions carry
        none).
    image_path: img_id -> file (default `lxmert_image_path`).
    """
    table = answer_table if answer_table is not None else LxmertAnswerTable((), {})
    data = read_lxmert(paths, table)
    root = Path(image_root)
    pairs = [
        ImageText(image_path(root, s.image_id), s.sentence, s.image_id, s.uid)
        for s in data.sentences
        if s.source in sources and s.labels is None
    ]
    return ImageTextPairs(data.files, pairs, data.warnings)


def csv_pairs(
    path: PathLike,
    img_key: str = CSV_IMAGE_KEY,
    caption_key: str = CSV_CAPTION_KEY,
    sep: str = CSV_SEPARATOR,
    image_root: PathLike | None = None,
) -> ImageTextPairs:
    """A CSV / TSV with a header row; one pair a row. Image paths as written (open_clip opens them as they
    are, relative to the working directory), or under `image_root` when given (absolute paths stay).

    Errors: a missing column (naming the header found), a row with too few / too many fields, an empty
    image path or caption — each naming the file and the line.
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"{p}: no such file")
    if len(sep) != 1:
        raise ValueError(f"{p}: the separator must be one character, got {sep!r}")
    root = Path(image_root) if image_root is not None else None
    pairs: list[ImageText] = []
    with p.open("r", encoding="utf-8", newline="") as f:
        reader = csv.reader(f, delimiter=sep)
        header = next(reader, None)
        if header is None:
            raise error(p, None, "empty file (expected a header row)")
        for key in (img_key, caption_key):
            if key not in header:
                raise error(p, "line 1", f"no column {key!r} in the header {header} (separator {sep!r})")
        i_img, i_cap = header.index(img_key), header.index(caption_key)
        for row in reader:
            where = f"line {reader.line_num}"
            if not row:
                continue
            if len(row) != len(header):
                raise error(p, where, f"{len(row)} fields for {len(header)} columns (separator {sep!r})")
            image, caption = row[i_img].strip(), row[i_cap]
            if not image:
                raise error(p, where, f"empty {img_key!r}")
            if not caption.strip():
                raise error(p, where, f"empty {caption_key!r}")
            file = Path(image) if root is None else root / image
            pairs.append(ImageText(file, caption, image, where))
    return ImageTextPairs((p,), pairs, {})


Transform = Callable[[Image.Image], torch.Tensor]
Tokenizer = Callable[[list[str]], torch.Tensor]


class ImageTextDataset(Dataset):
    """Map-style dataset of (pixels [3, H, W], token ids [L]) from pairs, as open_clip's CsvDataset gives.

    transform: e.g. open_clip's ``preprocess_train`` (PIL RGB image -> tensor);
    tokenizer: e.g. ``open_clip.get_tokenizer(name)`` (list of texts -> [N, L] ids).
    """

    def __init__(
        self, pairs: ImageTextPairs | Sequence[ImageText], transform: Transform, tokenizer: Tokenizer
    ):
        self.pairs = list(pairs.pairs if isinstance(pairs, ImageTextPairs) else pairs)
        self.source = (
            ", ".join(str(f) for f in pairs.files)
            if isinstance(pairs, ImageTextPairs)
            else "image-text pairs"
        )
        self.transform, self.tokenizer = transform, tokenizer

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        pair = self.pairs[index]
        try:
            image = load_image(pair.image)
        except ImageDecodeError as err:
            raise ImageDecodeError(f"{err} (pair {pair.entry} of {self.source})") from None
        pixels = self.transform(image)  # [3, H, W]
        tokens = self.tokenizer([pair.caption])[0]  # [L]
        return pixels, tokens


__all__ = [
    "CSV_CAPTION_KEY",
    "CSV_IMAGE_KEY",
    "CSV_SEPARATOR",
    "LXMERT_CAPTION_SOURCES",
    "ImageText",
    "ImageTextDataset",
    "ImageTextPairs",
    "coco_caption_pairs",
    "csv_pairs",
    "karpathy_pairs",
    "lxmert_caption_pairs",
    "lxmert_image_path",
]
