"""GQA: the balanced / all questions JSON (one file, or a directory of shards), with or without answers.

A questions file is one JSON object, question id -> entry::

    {"202218649": {"imageId": "n578564", "question": "What is hanging above the chalkboard?",
                   "answer": "picture", "fullAnswer": "The picture is hanging above the chalkboard.",
                   "isBalanced": true, "types": {"structural": "query", "semantic": "rel", "detailed": "relS"},
                   "groups": {...}, "semantic": [...], "entailed": [...], "equivalent": [...], ...}}

``train_all_questions`` ships as a directory of shards (``train_all_questions_0.json`` ...); pass the directory
and every ``*.json`` in it is read, in natural order of the names. Test / submission splits
(``test_balanced_questions.json``, ``submission_all_questions.json``) have no answer fields.

Errors (DataFormatError naming file and question): not a JSON object, missing or mistyped imageId / question,
empty question, empty answer, image id not in the given set, a question id twice (in one file, or in two
shards), a missing answer when ``require_answers`` is set. Counted warning: a file where some questions have
an answer and others do not (the ones without keep answer None).
"""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path

from clipvil.data.validate import (
    PathLike,
    WarningCounter,
    check_image,
    error,
    get_field,
    load_json,
    no_gc,
    optional_field,
)


@dataclass(slots=True)
class GqaQuestion:
    """One GQA question; answer fields are None on test / submission splits."""

    question_id: str
    image_id: str  # e.g. "n578564" (Visual Genome / GQA image file stem)
    question: str
    answer: str | None = None  # short answer, the classification label
    full_answer: str | None = None  # the answer as a sentence
    is_balanced: bool | None = None
    structural: str | None = None  # types.structural: verify | query | choose | logical | compare
    semantic: str | None = None  # types.semantic: rel | attr | obj | cat | global
    detailed: str | None = None  # types.detailed, e.g. "relS"


@dataclass
class GqaSplit:
    """Questions of one split in file order (shards one after another), and the warning counts of the read."""

    files: tuple[Path, ...]
    questions: list[GqaQuestion]
    warnings: dict[str, int] = field(default_factory=dict)

    @property
    def has_answers(self) -> bool:
        """True when every question has an answer."""
        return all(q.answer is not None for q in self.questions)


def gqa_question_files(path: PathLike) -> list[Path]:
    """The file itself, or the ``*.json`` shards of a directory in natural order (…_2 before …_10)."""
    p = Path(path)
    if p.is_file():
        return [p]
    if not p.is_dir():
        raise FileNotFoundError(f"{p}: no such file or directory")
    shards = sorted(
        p.glob("*.json"), key=lambda s: [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", s.name)]
    )
    if not shards:
        raise FileNotFoundError(f"{p}: directory has no *.json question shards")
    return shards


def read_gqa(
    path: PathLike,
    image_ids: Collection[str] | None = None,
    require_answers: bool = False,
) -> GqaSplit:
    """Reads a GQA questions file or a directory of shards.

    image_ids: when given, every question's imageId must be in it.
    require_answers: a question without an answer is an error (use it for train / val / testdev).
    """
    files = gqa_question_files(path)
    seen: dict[str, Path] = {}
    questions: list[GqaQuestion] = []
    counts: dict[str, int] = {}
    with no_gc():
        for shard in files:
            _read_shard(shard, image_ids, require_answers, seen, questions, counts)
    return GqaSplit(tuple(files), questions, counts)


def _read_shard(
    shard: Path,
    image_ids: Collection[str] | None,
    require_answers: bool,
    seen: dict[str, Path],
    questions: list[GqaQuestion],
    counts: dict[str, int],
) -> None:
    """Appends the questions of one file; question ids are unique across all shards."""
    warnings = WarningCounter(shard)
    parsed = []
    for qid, entry in _load_question_dict(shard).items():
        if qid in seen:
            raise error(shard, f"question {qid}", f"duplicate question id (also in {seen[qid]})")
        seen[qid] = shard
        parsed.append(_parse_question(qid, entry, shard, image_ids, require_answers))
    if any(q.answer is not None for q in parsed):
        for q in parsed:
            if q.answer is None:
                warnings.add("question without answer in a file with answers", f"question {q.question_id}")
    questions.extend(parsed)
    for kind, n in warnings.emit().items():
        counts[kind] = counts.get(kind, 0) + n


def _load_question_dict(path: Path) -> dict:
    """The top-level object of a questions file; a question id given twice in it is an error."""

    def no_duplicate_keys(pairs: list[tuple[str, object]]) -> dict:
        obj = dict(pairs)
        if len(obj) != len(pairs):
            keys = [k for k, _ in pairs]
            dup = next(k for k in keys if keys.count(k) > 1)
            raise error(path, f"question {dup}", "duplicate question id (key given twice in one JSON object)")
        return obj

    data = load_json(path, object_pairs_hook=no_duplicate_keys)
    if not isinstance(data, dict):
        raise error(path, None, f"expected a JSON object question id -> question, got {type(data).__name__}")
    return data


def _parse_question(
    qid: str, entry: object, path: Path, image_ids: Collection[str] | None, require_answers: bool
) -> GqaQuestion:
    where = f"question {qid}"
    image_id = get_field(entry, "imageId", path, where, str)
    check_image(image_id, image_ids, path, where)
    text = get_field(entry, "question", path, where, str)
    if not text.strip():
        raise error(path, where, "empty question")
    assert isinstance(entry, dict)  # checked by get_field()
    answer = optional_field(entry, "answer", path, where, str)
    if answer is None and require_answers:
        raise error(path, where, "missing field 'answer' (answers are required for this split)")
    if answer is not None and not answer.strip():
        raise error(path, where, "empty answer")
    types = optional_field(entry, "types", path, where, dict) or {}
    return GqaQuestion(
        question_id=qid,
        image_id=image_id,
        question=text,
        answer=answer,
        full_answer=optional_field(entry, "fullAnswer", path, where, str),
        is_balanced=optional_field(entry, "isBalanced", path, where, bool),
        structural=optional_field(types, "structural", path, where, str),
        semantic=optional_field(types, "semantic", path, where, str),
        detailed=optional_field(types, "detailed", path, where, str),
    )


__all__ = ["GqaQuestion", "GqaSplit", "gqa_question_files", "read_gqa"]
