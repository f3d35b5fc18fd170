"""NLVR2 (lil-lab/nlvr, ``nlvr2/data/{train,dev,test1,test2}.json``): one sentence / image-pair example a line.

Each line is a JSON object; the fields that matter (the repository's README)::

    {"identifier": "dev-850-0-0", "sentence": "The right image shows ...", "label": "False",
     "left_url": "https://...", "right_url": "https://...", "writer": "61", "synset": "beer bottle",
     "query": "some beer bottles38", "validation": {...}, "extra_validations": {...}}

The identifier is ``split-set_id-pair_id-sentence_id``: ``set_id`` names the original set of eight images,
``pair_id`` (0-3) the image pair of that set, ``sentence_id`` (0 or 1) the sentence written for it. The same
sentence is paired with several image pairs of its set, so the examples of one *sentence group* share
``split-set_id-*-sentence_id`` (the official consistency metric groups them so). The images are not in the
files: by the official convention the left and right image of an example are ``split-set_id-pair_id-img0.png``
and ``...-img1.png`` (whatever their real encoding), or they are fetched from the URLs.
The balanced / unbalanced subsets (``data/balanced/balanced_dev.json`` ...) are lines of the same format.

Errors (DataFormatError naming file and line): invalid JSON, missing or mistyped identifier / sentence /
label / urls, an identifier not of the form ``split-set-pair-sentence``, an empty sentence, a label other
than true / false (any case, as the official scripts compare lower-cased), a missing label when
``require_labels`` is set, a duplicate identifier. Counted warnings: examples of one sentence group whose
sentences differ (the official files never have them), identifiers of several splits in one file.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from clipvil.data.validate import (
    PathLike,
    WarningCounter,
    check_new,
    error,
    get_field,
    iter_jsonl,
    no_gc,
    optional_field,
)

_IDENTIFIER = re.compile(r"([A-Za-z0-9_]+)-(\d+)-(\d+)-(\d+)")
_LABELS = {"true": True, "false": False}


@dataclass(slots=True)
class Nlvr2Example:
    """One example: a sentence about a pair of images, and whether it is true of them."""

    identifier: str  # "split-set_id-pair_id-sentence_id", e.g. "dev-850-0-0"
    sentence: str
    label: bool | None  # None only for a line without a label, read with require_labels=False
    left_url: str | None = None
    right_url: str | None = None

    @property
    def parts(self) -> tuple[str, str, str, str]:
        """(split, set_id, pair_id, sentence_id) of the identifier."""
        split, set_id, pair_id, sentence_id = self.identifier.split("-")
        return split, set_id, pair_id, sentence_id

    @property
    def pair_key(self) -> str:
        """``split-set_id-pair_id``: the image pair (the stem of its image file names)."""
        split, set_id, pair_id, _ = self.parts
        return f"{split}-{set_id}-{pair_id}"

    @property
    def left_image(self) -> str:
        """The official file name of the left image: ``split-set_id-pair_id-img0.png``."""
        return f"{self.pair_key}-img0.png"

    @property
    def right_image(self) -> str:
        """The official file name of the right image: ``split-set_id-pair_id-img1.png``."""
        return f"{self.pair_key}-img1.png"

    @property
    def sentence_key(self) -> str:
        """The sentence group, as the official metrics.py forms it: the pair field blanked (``dev-850--0``)."""
        split, set_id, _, sentence_id = self.parts
        return f"{split}-{set_id}--{sentence_id}"


@dataclass
class Nlvr2Split:
    """The examples of one file in file order, and the warning counts of the read."""

    file: Path
    examples: list[Nlvr2Example]
    warnings: dict[str, int] = field(default_factory=dict)

    @property
    def has_labels(self) -> bool:
        """True when every example has a label."""
        return all(e.label is not None for e in self.examples)

    def labels(self) -> dict[str, bool]:
        """{identifier: label} (the gold labels the metrics take); a ValueError when some are missing."""
        unlabelled = [e.identifier for e in self.examples if e.label is None]
        if unlabelled:
            raise ValueError(f"{self.file}: {len(unlabelled)} example(s) have no label (e.g. {unlabelled[0]})")
        return {e.identifier: bool(e.label) for e in self.examples}


def parse_identifier(identifier: str) -> tuple[str, str, str, str]:
    """(split, set_id, pair_id, sentence_id); a ValueError when it is not ``split-set-pair-sentence``."""
    match = _IDENTIFIER.fullmatch(identifier)
    if match is None:
        raise ValueError(f"identifier {identifier!r} is not of the form split-set_id-pair_id-sentence_id")
    split, set_id, pair_id, sentence_id = match.groups()
    return split, set_id, pair_id, sentence_id


def parse_label(value: object) -> bool:
    """True / False from the official "True" / "False" (any case) or a JSON boolean; ValueError otherwise."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in _LABELS:
        return _LABELS[value.strip().lower()]
    raise ValueError(f"label {value!r} is not true or false")


def read_nlvr2(path: PathLike, require_labels: bool = True) -> Nlvr2Split:
    """Reads one NLVR2 JSON-lines file (a full split or a balanced / unbalanced subset).

    require_labels: a line without a label is an error (turn off for unlabelled files of your own).
    """
    p = Path(path)
    warnings = WarningCounter(p)
    seen: dict[str, str] = {}
    sentences: dict[str, str] = {}
    splits: set[str] = set()
    examples: list[Nlvr2Example] = []
    with no_gc():
        for lineno, obj in iter_jsonl(p):
            example = _parse_example(obj, p, f"line {lineno}", require_labels, seen)
            key = example.sentence_key
            first = sentences.setdefault(key, example.sentence)
            if first != example.sentence:
                warnings.add("sentence differs within a sentence group", f"line {lineno}: {example.identifier}")
            splits.add(example.parts[0])
            examples.append(example)
    if len(splits) > 1:
        warnings.add("identifiers of several splits in one file", ", ".join(sorted(splits)))
    return Nlvr2Split(p, examples, warnings.emit())


def _parse_example(
    obj: object, path: Path, line: str, require_labels: bool, seen: dict[str, str]
) -> Nlvr2Example:
    identifier = get_field(obj, "identifier", path, line, str)
    where = f"{line}: example {identifier}"
    try:
        parse_identifier(identifier)
    except ValueError as err:
        raise error(path, where, str(err)) from None
    check_new(seen, identifier, path, where, "identifier", line)
    assert isinstance(obj, dict)  # checked by get_field()
    sentence = get_field(obj, "sentence", path, where, str)
    if not sentence.strip():
        raise error(path, where, "empty sentence")
    raw_label = obj.get("label")
    if raw_label is None:
        if require_labels:
            raise error(path, where, "missing field 'label' (labels are required for this file)")
        label = None
    else:
        try:
            label = parse_label(raw_label)
        except ValueError as err:
            raise error(path, where, f"field 'label': {err}") from None
    return Nlvr2Example(
        identifier=identifier,
        sentence=sentence,
        label=label,
        left_url=optional_field(obj, "left_url", path, where, str),
        right_url=optional_field(obj, "right_url", path, where, str),
    )


__all__ = ["Nlvr2Example", "Nlvr2Split", "parse_identifier", "parse_label", "read_nlvr2"]
