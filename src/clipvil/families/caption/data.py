"""The captioning task's data: splits from Karpathy's ``dataset_coco.json`` or COCO caption / image-info JSON
files, dataset items (an image with all its reference captions), batches and length buckets.

An item is one *image*: its feature-store key, every reference caption as padded token ids
(`CaptionVocab.encode`) and as reward sentences (word ids of the first `max_length` words, then eos: the
form CIDEr-D scores during self-critical training). Which captions of an image a cross-entropy update
trains on is decided in the task's forward (`select_captions`), so the choice is a pure function of the
update index and resumes exactly.
"""

from __future__ import annotations

import string
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from clipvil.data.captions import read_coco_captions, read_karpathy
from clipvil.data.tokenizers import CaptionVocab, tokenize_caption
from clipvil.data.validate import get_field, load_json

KEY_FIELDS = {"filepath", "stem", "image_id"}
Sentence = tuple[int, ...]


@dataclass(frozen=True)
class CaptionImage:
    """One image of a split and its references (none for a test-server split)."""

    image_id: int  # COCO id (Karpathy's cocoid)
    filepath: str  # image folder, e.g. "val2014" ("" when the source does not say)
    filename: str  # e.g. "COCO_val2014_000000391895.jpg"
    raw: tuple[str, ...]  # reference captions as written (evaluation references)
    tokens: tuple[tuple[str, ...], ...]  # their words (Karpathy's tokens, else `tokenize_caption(raw)`)


@dataclass(frozen=True)
class CaptionSplit:
    """The images of one named split, in file order."""

    name: str
    source: Path  # the file it was read from
    images: tuple[CaptionImage, ...]

    @property
    def has_references(self) -> bool:
        """True when every image has at least one reference caption."""
        return all(im.raw for im in self.images)


def read_karpathy_split(path: Path, name: str) -> CaptionSplit:
    """Split `name` (train = train + restval, val, test) of Karpathy's dataset_coco.json."""
    data = read_karpathy(path, restval_as_train=True)
    images = []
    for im in data.split(name):
        tokens = tuple(t if t else tuple(tokenize_caption(r)) for t, r in zip(im.tokens, im.raw))
        images.append(CaptionImage(im.image_id, im.filepath, im.filename, im.raw, tokens))
    if not images:
        raise KeyError(f"{path}: Karpathy split {name!r} has no images")
    return CaptionSplit(name, Path(path), tuple(images))


def read_coco_split(path: Path, name: str, folder: str) -> CaptionSplit:
    """A COCO caption JSON (images + annotations), or an image-info JSON without annotations (the test-server
    files, e.g. image_info_test2014.json: images to caption, no references). `folder` is the image folder."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"task.coco_files.{name}: no such file: {path}")
    data = load_json(path)
    if isinstance(data, dict) and "annotations" not in data:  # image-info file: the images to caption
        images = []
        for i, im in enumerate(get_field(data, "images", path, None, list)):
            image_id = get_field(im, "id", path, f"images[{i}]", int)
            filename = get_field(im, "file_name", path, f"image {image_id}", str)
            images.append(CaptionImage(image_id, folder, filename, (), ()))
        return CaptionSplit(name, path, tuple(images))
    coco = read_coco_captions(path)
    refs = coco.by_image()
    images = [CaptionImage(i, folder, coco.images[i], tuple(refs[i]),
                           tuple(tuple(tokenize_caption(c)) for c in refs[i])) for i in coco.images]
    return CaptionSplit(name, path, tuple(images))


def check_key_template(template: str, option: str) -> None:
    """A feature-key template may use {filepath}, {stem} and {image_id}, and must use one of them."""
    fields = {f for _, f, _, _ in string.Formatter().parse(template) if f is not None}
    unknown = sorted(fields - KEY_FIELDS)
    if unknown or not fields:
        raise ValueError(f"{option}: {template!r} uses {'unknown field(s) ' + str(unknown) if unknown else 'no field'};"
                         f" known: {sorted(KEY_FIELDS)}")


def feature_key(template: str, image: CaptionImage) -> str:
    """The store id of an image, e.g. "val2014/COCO_val2014_000000391895" for "{filepath}/{stem}"."""
    if "{filepath}" in template and not image.filepath:
        raise KeyError(f"image {image.image_id}: its source names no image folder for {{filepath}}; set "
                       "task.image_folders.<split> or use a task.feature_key without {filepath}")
    return template.format(filepath=image.filepath, stem=Path(image.filename).stem, image_id=image.image_id)


def reward_sentence(vocab: CaptionVocab, tokens: tuple[str, ...]) -> Sentence:
    """A reference as CIDEr-D scores it in SCST: ids of its first max_length words (unknown → unk), then eos."""
    return tuple(vocab.encode(tokens, pad=False)[1:])


class CaptionDataset(Dataset):
    """One item per image: key, padded caption ids (int32 [C, max_length + 2]; C = 0 without references) and
    reward sentences."""

    def __init__(self, split: CaptionSplit, keys: list[str], vocab: CaptionVocab) -> None:
        self.split, self.keys = split, keys
        width = vocab.max_length + 2
        self.captions = [np.array([vocab.encode(t) for t in im.tokens], dtype=np.int32).reshape(-1, width)
                         for im in split.images]  # [C_i, max_length + 2] per image
        self.refs = [tuple(reward_sentence(vocab, t) for t in im.tokens) for im in split.images]
        self.lengths = [max((min(len(t), vocab.max_length) for t in im.tokens), default=0) for im in split.images]

    def __len__(self) -> int:
        return len(self.split.images)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return {"image_id": self.split.images[i].image_id, "key": self.keys[i], "captions": self.captions[i],
                "refs": self.refs[i]}


def caption_tensor(items: list[dict[str, Any]], pad: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Every item's captions as [B, C, L] (C = most captions of an item; missing rows are all pad) and the
    caption count of each item [B]."""
    counts = torch.tensor([len(it["captions"]) for it in items], dtype=torch.long)  # [B]
    width = items[0]["captions"].shape[1]
    out = torch.full((len(items), int(counts.max()), width), pad, dtype=torch.long)  # [B, C, L]
    for b, it in enumerate(items):
        out[b, : len(it["captions"])] = torch.from_numpy(it["captions"])  # [C_b, L]
    return out, counts


def select_captions(captions: torch.Tensor, counts: torch.Tensor, per_image: int,
                    generator: torch.Generator) -> torch.Tensor:
    """`per_image` caption rows of each image, image-major [B * per_image, L]: all of them when an image has
    exactly that many; a random subset without replacement when it has more; draws with replacement when
    it has fewer (as self-critical.pytorch's loader picks `seq_per_img` captions)."""
    rows = []
    for b, n in enumerate(counts.tolist()):
        if n == per_image:
            pick = torch.arange(n)
        elif n > per_image:
            pick = torch.randperm(n, generator=generator)[:per_image].sort().values
        else:
            pick = torch.randint(n, (per_image,), generator=generator)
        rows.append(captions[b, pick])  # [E, L]
    return torch.cat(rows)  # [B*E, L]


def length_buckets(lengths: list[int], width: int) -> list[int]:
    """Bucket id of each image: its longest (clipped) caption's word count // width."""
    if width < 1:
        raise ValueError(f"task.length_bucket_width must be >= 1 to bucket, got {width}")
    return [n // width for n in lengths]
