"""LXMERT pre-training data (``data/lxmert/{mscoco_train,mscoco_nominival,mscoco_minival,vgnococo}.json``)
and the LXMERT answer table (``all_ans.json``), as airsplay/lxmert ``src/pretrain/lxmert_data.py`` reads them.

A data file is a list with one entry per image::

    [{"img_id": "COCO_val2014_000000560744",
      "sentf": {"mscoco": ["A woman ...", ...], "vqa": ["What is ...?", ...]},      # source -> sentences
      "labelf": {"vqa": [{"net": 1.0, "netting": 0.3}, ...]}}]                      # source -> one label a sentence

Captions carry no label; QA sources (vqa, gqa, visual7w) carry one answer -> score dict per sentence.
The answer table is a list ``[{"ans": "net", "dsets": ["vqa", "visual7w"]}, ...]``; with ``qa_sets`` given only
answers used by one of those sets are kept (LXMERT's ``--qaSets``). Each label answer is first converted the
LXMERT way (`convert_lxmert_answer`: lower-case, one trailing period, a leading article, a few spellings), then
looked up; answers not in the table are dropped from the label and counted. Where two answers of one label
convert to the same answer, the higher score is kept (LXMERT let the later one overwrite; counted too).

Errors (DataFormatError naming file and image / sentence): missing or mistyped field, empty image id,
empty sentence, a labelf source without sentf, a label list whose length differs from its sentences,
a non-numeric score, a duplicate img_id (within or across files), an image not in the given set.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from clipvil.data.validate import (
    PathLike,
    WarningCounter,
    check_image,
    error,
    expect_type,
    get_field,
    load_json,
    no_gc,
    optional_field,
)

# LXMERT's AnswerTable.ANS_CONVERT, applied after the article strip (so the "a man" keys never fire; kept as is).
LXMERT_ANSWER_CONVERT: dict[str, str] = {
    "a man": "man",
    "the man": "man",
    "a woman": "woman",
    "the woman": "woman",
    "one": "1",
    "two": "2",
    "three": "3",
    "four": "4",
    "five": "5",
    "six": "6",
    "seven": "7",
    "eight": "8",
    "nine": "9",
    "ten": "10",
    "grey": "gray",
}


def convert_lxmert_answer(answer: str) -> str:
    """LXMERT's answer conversion: lower-case, drop one trailing '.', one leading a/an/the, map a few words."""
    if not answer:
        return ""
    ans = answer.lower()
    if ans.endswith("."):
        ans = ans[:-1].strip()
    for article in ("a ", "an ", "the "):  # tried in this order, each at most once, as LXMERT does
        if ans.startswith(article):
            ans = ans[len(article) :].strip()
    return LXMERT_ANSWER_CONVERT.get(ans, ans)


@dataclass(frozen=True)
class LxmertAnswerTable:
    """The answers of the LXMERT QA head in label order (answer id = position)."""

    answers: tuple[str, ...]
    ans2id: dict[str, int]

    def __len__(self) -> int:
        return len(self.answers)


def load_lxmert_answer_table(path: PathLike, qa_sets: Collection[str] | None = None) -> LxmertAnswerTable:
    """Reads ``all_ans.json``; with `qa_sets` (e.g. {"vqa", "gqa", "visual7w"}) keeps their answers only."""
    p = Path(path)
    raw = load_json(p)
    expect_type(raw, list, p, None, "the answer table")
    answers: list[str] = []
    ans2id: dict[str, int] = {}
    wanted = None if qa_sets is None else set(qa_sets)
    for i, entry in enumerate(raw):
        ans = get_field(entry, "ans", p, f"answers[{i}]", str)
        dsets = get_field(entry, "dsets", p, f"answer {ans!r}", list)
        if wanted is not None and not wanted.intersection(dsets):
            continue
        if ans in ans2id:
            raise error(p, f"answer {ans!r}", "duplicate answer in the table")
        ans2id[ans] = len(answers)
        answers.append(ans)
    if not answers:
        raise error(p, None, f"no answer used by the QA sets {sorted(wanted or [])}")
    return LxmertAnswerTable(tuple(answers), ans2id)


@dataclass(slots=True)
class LxmertSentence:
    """One sentence of one image, flattened as LXMERT's torch dataset does."""

    uid: str  # "{img_id}_{source}_{index:03d}"
    image_id: str
    source: str  # e.g. "mscoco", "vg", "vqa", "gqa", "visual7w"
    sentence: str
    labels: dict[int, float] | None  # answer id -> score; None for captions (no label)


@dataclass
class LxmertData:
    """Every sentence of the files read, in file order, and what the read counted."""

    files: tuple[Path, ...]
    sentences: list[LxmertSentence]
    n_images: int
    warnings: dict[str, int] = field(default_factory=dict)


def read_lxmert(
    paths: PathLike | Sequence[PathLike],
    answer_table: LxmertAnswerTable,
    image_ids: Collection[str] | None = None,
) -> LxmertData:
    """Reads one or more LXMERT pre-training JSON files; label answers are mapped through `answer_table`.

    image_ids: when given, every img_id must be in it.
    """
    files = [Path(paths)] if isinstance(paths, (str, Path)) else [Path(p) for p in paths]
    seen: dict[str, Path] = {}
    sentences: list[LxmertSentence] = []
    counts: dict[str, int] = {}
    with no_gc():
        for p in files:
            warnings = WarningCounter(p)
            entries = expect_type(load_json(p), list, p, None, "an LXMERT data file")
            for i, entry in enumerate(entries):
                image_id = get_field(entry, "img_id", p, f"entries[{i}]", str)
                where = f"image {image_id}"
                if not image_id.strip():
                    raise error(p, f"entries[{i}]", "empty img_id")
                if image_id in seen:
                    raise error(p, where, f"duplicate img_id (also in {seen[image_id]})")
                seen[image_id] = p
                check_image(image_id, image_ids, p, where)
                sentences.extend(_image_sentences(entry, image_id, p, where, answer_table, warnings))
            for kind, n in warnings.emit().items():
                counts[kind] = counts.get(kind, 0) + n
    return LxmertData(tuple(files), sentences, len(seen), counts)


def _image_sentences(
    entry: dict, image_id: str, path: Path, where: str, table: LxmertAnswerTable, warnings: WarningCounter
) -> list[LxmertSentence]:
    sentf = get_field(entry, "sentf", path, where, dict)
    labelf = optional_field(entry, "labelf", path, where, dict) or {}
    for source in labelf:
        if source not in sentf:
            raise error(path, where, f"labelf source {source!r} has no sentences in sentf")
    out = []
    for source, sents in sentf.items():
        expect_type(sents, list, path, where, f"sentf[{source!r}]")
        labels = labelf.get(source)
        if labels is not None:
            expect_type(labels, list, path, where, f"labelf[{source!r}]")
            if len(labels) != len(sents):
                raise error(
                    path, where, f"source {source!r}: {len(labels)} labels for {len(sents)} sentences"
                )
        for k, sent in enumerate(sents):
            at = f"{where}: {source} sentence {k}"
            if type(sent) is not str or not sent.strip():
                raise error(
                    path,
                    at,
                    "empty sentence" if type(sent) is str else f"sentence must be str, got {sent!r:.60}",
                )
            mapped = None if labels is None else _map_label(labels[k], path, at, table, warnings)
            out.append(LxmertSentence(f"{image_id}_{source}_{k:03d}", image_id, source, sent, mapped))
    return out


def _map_label(
    label: object, path: Path, at: str, table: LxmertAnswerTable, warnings: WarningCounter
) -> dict[int, float]:
    expect_type(label, dict, path, at, "label")
    assert isinstance(label, dict)
    mapped: dict[int, float] = {}
    for ans, score in label.items():
        if type(score) not in (int, float) or not math.isfinite(score):
            raise error(path, at, f"score of answer {ans!r} must be a finite number, got {score!r:.60}")
        answer_id = table.ans2id.get(convert_lxmert_answer(ans))
        if answer_id is None:
            warnings.add("label answer not in the answer table (dropped)", f"{at}: {ans!r}")
            continue
        if answer_id in mapped:
            warnings.add("two label answers convert to one (higher score kept)", f"{at}: {ans!r}")
        mapped[answer_id] = max(float(score), mapped.get(answer_id, -math.inf))
    return mapped


__all__ = [
    "LXMERT_ANSWER_CONVERT",
    "LxmertAnswerTable",
    "LxmertData",
    "LxmertSentence",
    "convert_lxmert_answer",
    "load_lxmert_answer_table",
    "read_lxmert",
]
