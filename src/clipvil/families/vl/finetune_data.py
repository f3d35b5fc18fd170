"""The fine-tuning datasets of CLIP-ViL_p, one shape for all: examples of (id, image(s), text, target).

- vqa: files (task.splits values, in data_dir) [v2_OpenEnded_mscoco_<s>_questions.json,
  v2_mscoco_<s>_annotations.json] (test: questions only); images <coco split>/COCO_<split>_<id:012d>.jpg under
  image_root; target: soft scores over the answers.
- gqa: [<s>_balanced_questions.json] (or a shard folder); images <imageId>.jpg; target: the answer (score 1).
- snli_ve: [snli_ve_<s>.jsonl]; images <Flickr30k id>.jpg; target: the class index (contradiction, entailment,
  neutral).
- nlvr2: [<s>.json] (JSON lines); images "official": <pair>-img0.png / -img1.png anywhere below image_root, or
  "url": image_root / left_url, right_url; target: 0 False / 1 True.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch.utils.data import Dataset

from clipvil.data.answers import AnswerVocab, SoftTarget, hard_target, vqa_soft_targets
from clipvil.data.gqa import GqaSplit, read_gqa
from clipvil.data.nlvr2 import Nlvr2Split, read_nlvr2
from clipvil.data.snli_ve import SNLI_VE_LABELS, SnliVeSplit, flickr30k_image_filename, read_snli_ve
from clipvil.data.vqa import VqaSplit, read_vqa
from clipvil.families.vl.images import ImageLoader, untag
from clipvil.families.vl.text import TextCodec

DATASETS = ("vqa", "gqa", "snli_ve", "nlvr2")
NLVR2_CLASSES = ("False", "True")  # label index 0, 1
Split = VqaSplit | GqaSplit | SnliVeSplit | Nlvr2Split


@dataclass(slots=True)
class Example:
    """One fine-tuning example."""

    key: Any  # question id (VQA int, GQA str), pairID (SNLI-VE) or identifier (NLVR2)
    images: tuple[Path, ...]  # one image, or (left, right) for NLVR2
    text: str  # question, hypothesis or statement
    target: SoftTarget | int | None  # soft target (VQA / GQA), class index (SNLI-VE / NLVR2), None (test)


def read_split(dataset: str, files: Sequence[Path]) -> Split:
    """The parsed split of one dataset from its files (see the module table)."""
    if dataset == "vqa":
        return read_vqa(files[0], files[1] if len(files) > 1 else None)
    if dataset == "gqa":
        return read_gqa(files[0])
    if dataset == "snli_ve":
        return read_snli_ve(files[0])
    if dataset == "nlvr2":
        return read_nlvr2(files[0], require_labels=False)
    raise ValueError(f"task.dataset: unknown dataset {dataset!r}; known: {', '.join(DATASETS)}")


def train_answers(dataset: str, split: Split) -> list[str]:
    """Answers of a training split, for building a vocabulary (VQA: multiple-choice answers; GQA: answers)."""
    if dataset == "gqa":
        return [q.answer for q in split.questions if q.answer is not None]  # type: ignore[union-attr]
    raise ValueError(f"{dataset}: answers are built with build_vqa_answer_vocab or fixed")


def fixed_labels(dataset: str) -> tuple[str, ...] | None:
    """The class names of classification datasets (SNLI-VE, NLVR2); None for answer vocabularies."""
    return {"snli_ve": SNLI_VE_LABELS, "nlvr2": NLVR2_CLASSES}.get(dataset)


class Nlvr2Images:
    """Where NLVR2 images are: "official" names found anywhere below the root, or the example's URLs."""

    def __init__(self, root: Path, mode: str) -> None:
        if mode not in ("official", "url"):
            raise ValueError(f"task.nlvr2_images: must be 'official' or 'url', got {mode!r}")
        self.root, self.mode = Path(root), mode
        self._index: dict[str, Path] | None = None

    def pair(self, ex: Any) -> tuple[Path, Path]:
        if self.mode == "url":
            if not ex.left_url or not ex.right_url:
                raise ValueError(f"NLVR2 example {ex.identifier}: no left_url / right_url (nlvr2_images: url)")
            return self.root / ex.left_url, self.root / ex.right_url
        if self._index is None:
            self._index = {p.name: p for p in self.root.rglob("*-img[01].png")}
        missing = [n for n in (ex.left_image, ex.right_image) if n not in self._index]
        if missing:
            raise FileNotFoundError(f"{self.root}: NLVR2 image {missing[0]} not found below it")
        return self._index[ex.left_image], self._index[ex.right_image]


def examples_of(dataset: str, split: Split, image_root: Path, answers: AnswerVocab | None,
                nlvr2_images: str = "official") -> list[Example]:
    """The examples of a split (targets None where the split has no labels)."""
    root = Path(image_root)
    if dataset == "vqa":
        assert isinstance(split, VqaSplit) and answers is not None
        targets = vqa_soft_targets(split.examples, answers)[0] if split.has_answers else [None] * len(split.examples)
        return [Example(e.question_id, (root / split.image_split / split.image_filename(e.image_id),), e.question, t)
                for e, t in zip(split.examples, targets)]
    if dataset == "gqa":
        assert isinstance(split, GqaSplit) and answers is not None
        return [Example(q.question_id, (root / f"{q.image_id}.jpg",), q.question,
                        None if q.answer is None else hard_target(q.answer, answers)) for q in split.questions]
    if dataset == "snli_ve":
        assert isinstance(split, SnliVeSplit)
        return [Example(p.pair_id, (root / flickr30k_image_filename(p.image_id),), p.hypothesis, p.label_index)
                for p in split.pairs]
    assert isinstance(split, Nlvr2Split)
    where = Nlvr2Images(root, nlvr2_images)
    return [Example(e.identifier, where.pair(e), e.sentence, None if e.label is None else int(e.label))
            for e in split.examples]


class FinetuneItems(Dataset):
    """Examples → items with decoded, padded image(s) and token ids."""

    def __init__(self, examples: list[Example], codec: TextCodec, loader: ImageLoader) -> None:
        self.examples, self.codec, self.loader = examples, codec, loader

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, Any]:
        epoch, i = untag(key)
        ex = self.examples[i]
        loaded = [self.loader(p) for p in ex.images]
        return {"epoch": epoch, "index": i, "key": ex.key, "pixels": [p for p, _ in loaded],
                "content_hw": [hw for _, hw in loaded], "ids": self.codec.encode(ex.text), "target": ex.target}


__all__ = ["DATASETS", "NLVR2_CLASSES", "Example", "FinetuneItems", "Nlvr2Images", "examples_of", "fixed_labels",
           "read_split", "train_answers"]
