"""Image–caption data of the contrastive tasks (clip, retrieval): which files, read by the `clipvil.data`
readers, turned into training pairs or retrieval test sets.

    data:                                  # YAML section task.data
      format: karpathy                     # karpathy | flickr30k | coco | lxmert | csv
      root: data/coco/annotations          # folder of the annotation files
      image_root: data/coco                # COCO: holds train2014/ val2014/; flickr30k: the image folder
      karpathy_file: dataset_coco.json     # karpathy / flickr30k: Karpathy's JSON in root
      splits: {train: train, val: val, test: test}   # see ImageTextData.splits

Training items are seeded per (run seed, epoch, index): the batch sampler tags each index with its epoch,
and the random crop of open_clip's training transform is drawn from a generator seeded by the three, so a
resumed or a distributed run sees the very pixels a single uninterrupted run sees.

WebDataset shards (`format: shards`) are read as an *indexed* corpus (`clipvil.families.clip.shards`): one pass
records every sample's caption and image member (offset, size), cached in the run directory, so the engine's
resumable, DDP-exact samplers apply to shards as to folders (a killed run resumes at its exact sample).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset

from clipvil.data.image_text import (
    ImageText,
    ImageTextPairs,
    coco_caption_pairs,
    csv_pairs,
    karpathy_pairs,
    lxmert_caption_pairs,
)
from clipvil.data.samplers import ResumableBatchSampler
from clipvil.data.validate import error, get_field, load_json
from clipvil.encoders.images import ImageDecodeError, load_image
from clipvil.engine.registry import RunContext
from clipvil.engine.task import Batch, BatchLayout
from clipvil.families.clip.shards import TarMember, read_shard_pairs
from clipvil.metrics.retrieval import retrieval_recalls


@dataclass
class ImageTextData:
    """Where a contrastive task's image–caption pairs come from (YAML section `task.data`)."""

    format: Literal["karpathy", "flickr30k", "coco", "lxmert", "csv", "shards"] = "karpathy"  # which reader:
    # Karpathy's dataset_coco.json, Karpathy's dataset_flickr30k.json, a COCO caption JSON, LXMERT files, a
    # CSV/TSV, or WebDataset tar shards (<key>.jpg|png + <key>.txt; a split is a brace pattern, e.g.
    # "train-{000000..000099}.tar", indexed once per run so the engine's resumable samplers apply)
    root: Path = Path("data/synthetic/captions")  # folder of the annotation files (relative names resolve here)
    image_root: Path = Path("data/synthetic/coco")  # images: COCO root (train2014/, val2014/), the Flickr30k
    # image folder, LXMERT's image root, or the base of a CSV's relative paths
    karpathy_file: str = "dataset_coco.json"  # karpathy / flickr30k: the JSON in root
    splits: dict[str, str] = field(default_factory=lambda: {"train": "train", "val": "val", "test": "test"})
    # split name -> karpathy/flickr30k: Karpathy split(s) joined by '+' ("train+restval"); coco: a caption JSON;
    # lxmert: JSON files joined by '+'; csv: a CSV/TSV file (file names relative to root)
    captions_per_image: int = 0  # retrieval sets: the first k captions of each image (0: all; COCO/Flickr: 5)
    max_images: int = 0  # retrieval sets: the first N images (0: all; e.g. COCO 1k = the first 1000 of 5k)
    csv_img_key: str = "filepath"  # csv: image column (open_clip's --csv-img-key)
    csv_caption_key: str = "title"  # csv: caption column (open_clip's --csv-caption-key)
    csv_separator: str = "\t"  # csv: field separator (open_clip's --csv-separator)


def flickr_karpathy_pairs(path: Path, image_root: Path, splits: Sequence[str]) -> ImageTextPairs:
    """The raw sentences of the images of `splits` in Karpathy's ``dataset_flickr30k.json``
    ({"images": [{"filename", "split", "sentences": [{"raw"}], "imgid"?}]}); image = image_root / filename."""
    data = load_json(path)
    wanted, pairs = set(splits), []
    for i, im in enumerate(get_field(data, "images", path, None, list)):
        where = f"images[{i}]"
        name = get_field(im, "filename", path, where, str)
        split = get_field(im, "split", path, where, str)
        if split not in ("train", "val", "test", "restval"):
            raise error(path, where, f"unknown split {split!r} (expected train, val, test or restval)")
        if split not in wanted:
            continue
        sentences = get_field(im, "sentences", path, where, list)
        if not sentences:
            raise error(path, where, "no sentences")
        for j, s in enumerate(sentences):
            raw = get_field(s, "raw", path, f"{where}: sentences[{j}]", str)
            if not raw.strip():
                raise error(path, f"{where}: sentences[{j}]", "empty caption")
            pairs.append(ImageText(image_root / name, raw, name, f"image {name}: sentences[{j}]"))
    if not pairs:
        raise error(path, None, f"no image of split(s) {sorted(wanted)}")
    return ImageTextPairs((path,), pairs, {})


def read_pairs(data: ImageTextData, split: str, ctx: RunContext | None = None) -> ImageTextPairs:
    """The pairs of split `split` as `data` describes them (KeyError naming the configured splits). Shards
    need the run's context: their index is made once by rank 0 and cached in the run directory."""
    if split not in data.splits:
        raise KeyError(f"task.data.splits has no split {split!r}; configured: {sorted(data.splits)}")
    spec, root, images = data.splits[split], Path(data.root), Path(data.image_root)
    if data.format == "shards":
        if ctx is None:
            raise ValueError("task.data.format=shards needs a run context (the shard index lives in the run)")
        return shard_pairs(str(root / spec), ctx)
    if data.format == "karpathy":
        return karpathy_pairs(root / data.karpathy_file, images, spec.split("+"),
                              restval_as_train="restval" not in spec)
    if data.format == "flickr30k":
        return flickr_karpathy_pairs(root / data.karpathy_file, images, spec.split("+"))
    if data.format == "coco":
        return coco_caption_pairs(root / spec, images)
    if data.format == "lxmert":
        return lxmert_caption_pairs([root / f for f in spec.split("+")], images)
    return csv_pairs(root / spec, data.csv_img_key, data.csv_caption_key, data.csv_separator, images)


def item_seed(seed: int, epoch: int, index: int) -> int:
    """A 63-bit seed that is a pure function of (run seed, epoch, item index)."""
    digest = hashlib.blake2b(f"{seed}:{epoch}:{index}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


class EpochTaggedSampler(ResumableBatchSampler):
    """The engine's resumable batch sampler whose indices carry their epoch: [(epoch, index), ...]."""

    def __iter__(self):  # type: ignore[override]
        for batch in super().__iter__():
            yield [(self.epoch, i) for i in batch]


def tagged_sampler(dataset: Dataset, layout: BatchLayout) -> EpochTaggedSampler:
    """The epoch-tagged sampler of a training split cut as the engine's layout says."""
    return EpochTaggedSampler(len(dataset), layout.batch_size, layout.grad_accum, layout.rank,  # type: ignore[arg-type]
                              layout.world_size, layout.seed, layout.shuffle)


def shard_pairs(spec: str, ctx: RunContext) -> ImageTextPairs:
    """The samples of WebDataset shards as pairs whose `image` is a TarMember (read by seek, not streamed)."""
    indexed = read_shard_pairs(spec, Path(ctx.out_dir), ctx)
    pairs = [ImageText(member, sentence.sentence, sentence.uid, f"shard sample {member.key}")  # type: ignore[arg-type]
             for member, sentence in zip(indexed.paths, indexed.sentences)]
    return ImageTextPairs(tuple(sorted({Path(m.shard) for m in indexed.paths})), pairs, {})


def _load(pair: ImageText, source: str):
    if isinstance(pair.image, TarMember):
        return pair.image.read_image()  # errors name the shard and the sample
    try:
        return load_image(pair.image)
    except ImageDecodeError as err:
        raise ImageDecodeError(f"{err} (pair {pair.entry} of {source})") from None


class PairDataset(Dataset):
    """Training pairs: item (epoch, i) or i -> {"image": [3, H, W], "text": [L], "index": i}; the transform's
    randomness is seeded by (seed, epoch, i)."""

    def __init__(self, pairs: ImageTextPairs, transform: Any, tokenize: Any, seed: int) -> None:
        self.pairs, self.transform, self.tokenize, self.seed = pairs.pairs, transform, tokenize, seed
        self.source = ", ".join(str(f) for f in pairs.files)

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, Any]:
        epoch, index = key if isinstance(key, tuple) else (0, key)
        pair = self.pairs[index]
        image = _load(pair, self.source)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(item_seed(self.seed, epoch, index))
            pixels = self.transform(image)  # [3, H, W]
        return {"image": pixels, "text": self.tokenize([pair.caption])[0], "index": index}  # text [L]


class RetrievalSet(Dataset):
    """A retrieval test set: item j -> {"image": [3, H, W], "texts": [k_j, L], "image_index": j}, images in
    order of first appearance, their captions in file order (the first `captions_per_image` of each)."""

    def __init__(self, pairs: ImageTextPairs, transform: Any, tokenize: Any, captions_per_image: int = 0,
                 max_images: int = 0) -> None:
        order: dict[str, int] = {}
        self.images: list[ImageText] = []
        self.captions: list[list[str]] = []
        for pair in pairs.pairs:
            if pair.image_key not in order:
                if max_images and len(order) == max_images:
                    continue
                order[pair.image_key] = len(self.images)
                self.images.append(pair)
                self.captions.append([])
            texts = self.captions[order[pair.image_key]]
            if not captions_per_image or len(texts) < captions_per_image:
                texts.append(pair.caption)
        self.transform, self.tokenize = transform, tokenize
        self.source = ", ".join(str(f) for f in pairs.files)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> dict[str, Any]:
        pixels = self.transform(_load(self.images[index], self.source))  # [3, H, W]
        return {"image": pixels, "texts": self.tokenize(self.captions[index]), "image_index": index}  # [k, L]


def collate_pairs(items: list[dict[str, Any]]) -> Batch:
    """Training pairs or retrieval images -> one batch (texts of a retrieval batch are concatenated, with
    `text_image` [T] the batch-wide image index of each)."""
    images = torch.stack([it["image"] for it in items])  # [B, 3, H, W]
    if "text" in items[0]:
        return {"image": images, "text": torch.stack([it["text"] for it in items]),  # [B, L]
                "ids": [it["index"] for it in items]}
    owner = torch.cat([torch.full((len(it["texts"]),), it["image_index"]) for it in items])  # [T]
    return {"image": images, "texts": torch.cat([it["texts"] for it in items]), "text_image": owner,  # [T, L]
            "ids": [it["image_index"] for it in items]}


@torch.no_grad()
def embed_retrieval(model: nn.Module, batches: Iterable[Batch]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(image embeddings [I, D], text embeddings [T, D], text -> image row [T]), L2-normalised, images in
    dataset order."""
    images, texts, owners = [], [], []
    for batch in batches:
        images.append(model.encode_image(batch["image"], normalize=True).float().cpu())  # [B, D]
        texts.append(model.encode_text(batch["texts"], normalize=True).float().cpu())  # [T_b, D]
        owners.append(batch["text_image"].cpu())  # [T_b]
    return torch.cat(images).numpy(), torch.cat(texts).numpy(), torch.cat(owners).numpy()


def retrieval_metrics(model: nn.Module, batches: Iterable[Batch]) -> dict[str, float]:
    """R@1/5/10 in both directions (percent), rsum and ranks of a retrieval set, from cosine similarities."""
    image_emb, text_emb, owner = embed_retrieval(model, batches)
    return retrieval_recalls(image_emb @ text_emb.T, owner)  # sim [I, T]


__all__ = ["EpochTaggedSampler", "ImageTextData", "PairDataset", "RetrievalSet", "collate_pairs",
           "embed_retrieval", "flickr_karpathy_pairs", "item_seed", "read_pairs", "retrieval_metrics",
           "tagged_sampler"]
