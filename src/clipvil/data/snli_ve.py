"""SNLI-VE (visual entailment): ``snli_ve_{train,dev,test}.jsonl``, one premise-image / hypothesis pair a line.

Each line is an SNLI pair whose premise caption is replaced by its Flickr30k image::

    {"Flikr30kID": "2248275918.jpg", "pairID": "2248275918.jpg#2r1c", "captionID": "2248275918.jpg#2",
     "sentence1": "A toddler poses ...", "sentence2": "A toddler sleeps outside.", "gold_label": "contradiction",
     "annotator_labels": ["contradiction"], "sentence1_parse": ..., ...}

The model input is the image and sentence2 (the hypothesis); sentence1 is the caption the image stands for.
The official files spell the image field ``Flikr30kID`` (value with ``.jpg``); AllenNLP's re-packaging (the
sample in shared/data) writes ``Flickr30K_ID`` without the suffix. Both are read; image ids are file stems.

SNLI marks pairs whose five annotators reached no majority with gold label ``-``. They have no label to learn
or score, so they are left out by default and counted (warning kind ``no-consensus gold label '-'``; the
count is also ``SnliVeSplit.no_consensus``); ``keep_no_consensus=True`` keeps them with label None.

Errors (DataFormatError naming file, line and pair): invalid JSON line, missing / mistyped field, empty
hypothesis, unknown gold label, duplicate pairID, the two image fields disagreeing, image id not in the given set.
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
    iter_jsonl,
    no_gc,
    optional_field,
)

# Label index order of UNITER's / CLIP-ViL's SNLI-VE data (VE_ENT2IDX: contradiction 0, entailment 1, neutral 2).
SNLI_VE_LABELS: tuple[str, ...] = ("contradiction", "entailment", "neutral")
NO_CONSENSUS = "-"
_LABEL_INDEX = {label: i for i, label in enumerate(SNLI_VE_LABELS)}
_IMAGE_FIELDS = ("Flikr30kID", "Flickr30K_ID")  # official spelling first, then AllenNLP's


@dataclass(slots=True)
class SnliVePair:
    """One image / hypothesis pair."""

    pair_id: str  # pairID, e.g. "2248275918.jpg#2r1c"
    image_id: str  # Flickr30k image file stem, e.g. "2248275918"
    hypothesis: str  # sentence2: the text input
    label: str | None  # gold_label; None only for a no-consensus pair kept on request
    premise: str | None = None  # sentence1, the caption the image replaced (not a model input)

    @property
    def label_index(self) -> int | None:
        """Index of the label in SNLI_VE_LABELS (None for a kept no-consensus pair)."""
        return None if self.label is None else _LABEL_INDEX[self.label]


@dataclass
class SnliVeSplit:
    """Pairs of one file in file order, and what the read counted."""

    file: Path
    pairs: list[SnliVePair]
    no_consensus: int  # pairs whose gold label is '-' (left out unless keep_no_consensus)
    warnings: dict[str, int] = field(default_factory=dict)


def flickr30k_image_filename(image_id: str) -> str:
    """The Flickr30k image file name of an image id: ``2248275918`` -> ``2248275918.jpg``."""
    return f"{image_id}.jpg"


def read_snli_ve(
    path: PathLike,
    image_ids: Collection[str] | None = None,
    keep_no_consensus: bool = False,
) -> SnliVeSplit:
    """Reads one SNLI-VE JSON-lines file.

    image_ids: when given, every pair's image id (file stem) must be in it.
    keep_no_consensus: keep pairs with gold label '-' (label None) instead of leaving them out.
    """
    p = Path(path)
    warnings = WarningCounter(p)
    seen: dict[str, str] = {}
    pairs: list[SnliVePair] = []
    no_consensus = 0
    with no_gc():
        for lineno, obj in iter_jsonl(p):
            pair = _parse_pair(obj, p, f"line {lineno}", image_ids, seen)
            if pair.label is None:
                no_consensus += 1
                kind = "kept with label None" if keep_no_consensus else "pair left out"
                warnings.add(f"no-consensus gold label '-' ({kind})", f"pair {pair.pair_id}")
                if not keep_no_consensus:
                    continue
            pairs.append(pair)
    return SnliVeSplit(p, pairs, no_consensus, warnings.emit())


def _parse_pair(
    obj: object, path: Path, line: str, image_ids: Collection[str] | None, seen: dict[str, str]
) -> SnliVePair:
    pair_id = get_field(obj, "pairID", path, line, str)
    where = f"{line}: pair {pair_id}"
    check_new(seen, pair_id, path, where, "pairID", line)
    assert isinstance(obj, dict)  # checked by get_field()
    image_id = _image_id(obj, path, where)
    check_image(image_id, image_ids, path, where)
    hypothesis = get_field(obj, "sentence2", path, where, str)
    if not hypothesis.strip():
        raise error(path, where, "empty hypothesis (sentence2)")
    gold = get_field(obj, "gold_label", path, where, str)
    if gold != NO_CONSENSUS and gold not in _LABEL_INDEX:
        raise error(path, where, f"unknown gold_label {gold!r} (expected one of {SNLI_VE_LABELS} or '-')")
    premise = optional_field(obj, "sentence1", path, where, str)
    return SnliVePair(pair_id, image_id, hypothesis, None if gold == NO_CONSENSUS else gold, premise)


def _image_id(obj: dict, path: Path, where: str) -> str:
    """The image file stem from Flikr30kID ("123.jpg") and/or Flickr30K_ID ("123"); both must agree."""
    stems = []
    for key in _IMAGE_FIELDS:
        value = optional_field(obj, key, path, where, (str, int))
        if value is not None:
            stem = Path(str(value)).stem if str(value).endswith(".jpg") else str(value)
            if not stem.strip():
                raise error(path, where, f"empty image id in field '{key}'")
            stems.append(stem)
    if not stems:
        raise error(path, where, f"missing field '{_IMAGE_FIELDS[0]}' (or '{_IMAGE_FIELDS[1]}')")
    if len(set(stems)) > 1:
        raise error(
            path,
            where,
            f"image fields disagree: {_IMAGE_FIELDS[0]} -> {stems[0]}, {_IMAGE_FIELDS[1]} -> {stems[1]}",
        )
    return stems[0]


__all__ = [
    "NO_CONSENSUS",
    "SNLI_VE_LABELS",
    "SnliVePair",
    "SnliVeSplit",
    "flickr30k_image_filename",
    "read_snli_ve",
]
