"""VQA v2: the official questions and annotations JSON files, joined by question id.

Questions file (``v2_OpenEnded_mscoco_{train2014,val2014,test2015,test-dev2015}_questions.json``)::

    {"info": {...}, "task_type": "Open-Ended", "data_type": "mscoco", "data_subtype": "train2014",
     "license": {...}, "questions": [{"image_id": 458752, "question": "What ...?", "question_id": 458752000}]}

Annotations file (``v2_mscoco_{train2014,val2014}_annotations.json``; test splits have none)::

    {"annotations": [{"question_id": 458752000, "image_id": 458752, "question_type": "what is this",
      "answer_type": "other", "multiple_choice_answer": "net",
      "answers": [{"answer": "net", "answer_confidence": "maybe", "answer_id": 1}, ... 10 of them]}]}

Errors (DataFormatError naming file and entry): missing or mistyped field, empty question, duplicate question
id, image id not in the given set, annotation without question or question without annotation, annotation
image id or data_subtype different from the question's. Counted warnings (entry kept): a blank human answer,
a question with other than 10 human answers, an annotation without question_type / answer_type /
multiple_choice_answer (the trimmed samples some projects ship; the multiple-choice answer then becomes the
most frequent human answer, the rule the VQA team used to make it).
"""

from __future__ import annotations

from collections import Counter
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
    optional_field,
)

N_HUMAN_ANSWERS = 10  # each VQA v2 question has 10 human answers
# data_subtype of a questions file -> the COCO image folder its images live in (test-dev is a subset of test2015)
IMAGE_SPLIT = {"test-dev2015": "test2015"}


@dataclass(slots=True)
class VqaExample:
    """One question, with its annotation when the split has one (test splits: answers is None)."""

    question_id: int
    image_id: int
    question: str
    answers: tuple[str, ...] | None = None  # the raw human answers (10), not normalised
    multiple_choice_answer: str | None = None  # the most frequent human answer (raw)
    question_type: str | None = None  # e.g. "what color is the"
    answer_type: str | None = None  # "yes/no" | "number" | "other"


@dataclass
class VqaSplit:
    """A read VQA split: examples in the order of the questions file, and the warning counts of the read."""

    questions_file: Path
    annotations_file: Path | None
    data_subtype: str  # e.g. "train2014", "test-dev2015"
    examples: list[VqaExample]
    warnings: dict[str, int] = field(default_factory=dict)

    @property
    def has_answers(self) -> bool:
        """True when the split came with annotations."""
        return self.annotations_file is not None

    @property
    def image_split(self) -> str:
        """The COCO image folder of this split: the data_subtype, except test-dev2015 -> test2015."""
        return IMAGE_SPLIT.get(self.data_subtype, self.data_subtype)

    def image_filename(self, image_id: int) -> str:
        """The COCO file name of an image of this split, e.g. COCO_val2014_000000262148.jpg."""
        return coco_image_filename(self.image_split, image_id)


def coco_image_filename(split: str, image_id: int) -> str:
    """COCO_{split}_{image_id:012d}.jpg, the file names of the COCO 2014/2015 image folders."""
    if isinstance(image_id, bool) or not isinstance(image_id, int) or image_id < 0:
        raise ValueError(f"coco_image_filename: image id must be a non-negative int, got {image_id!r}")
    return f"COCO_{split}_{image_id:012d}.jpg"


def coco_image_id(filename: str) -> int:
    """The image id in a COCO file name (``COCO_val2014_000000391895.jpg`` -> 391895; a path is fine)."""
    stem = Path(filename).stem
    parts = stem.split("_")
    if len(parts) != 3 or parts[0] != "COCO" or not parts[2].isdigit():
        raise ValueError(f"not a COCO image file name (COCO_<split>_<12 digits>.jpg): {filename!r}")
    return int(parts[2])


def read_vqa(
    questions_path: PathLike,
    annotations_path: PathLike | None = None,
    image_ids: Collection[int] | None = None,
) -> VqaSplit:
    """Reads a VQA v2 questions file and, for train/val, its annotations file, joined by question id.

    image_ids: when given, every question's image must be in it (e.g. the images whose features exist).
    """
    qpath = Path(questions_path)
    with no_gc():
        subtype, examples = _read_questions(qpath, image_ids)
        if annotations_path is None:
            return VqaSplit(qpath, None, subtype, examples, {})
        apath = Path(annotations_path)
        warnings = WarningCounter(apath)  # the questions file has nothing to warn about; its annotations may
        _join_annotations(apath, subtype, examples, warnings)
    return VqaSplit(qpath, apath, subtype, examples, warnings.emit())


def _read_questions(path: Path, image_ids: Collection[int] | None) -> tuple[str, list[VqaExample]]:
    data = load_json(path)
    questions = get_field(data, "questions", path, None, list)
    subtype = get_field(data, "data_subtype", path, None, str)
    seen: dict[int, str] = {}
    examples: list[VqaExample] = []
    for i, q in enumerate(questions):
        where = f"questions[{i}]"
        qid = get_field(q, "question_id", path, where, int)
        where = f"question {qid}"
        check_new(seen, qid, path, where, "question id", f"questions[{i}]")
        image_id = get_field(q, "image_id", path, where, int)
        check_image(image_id, image_ids, path, where)
        text = get_field(q, "question", path, where, str)
        if not text.strip():
            raise error(path, where, "empty question")
        examples.append(VqaExample(qid, image_id, text))
    return subtype, examples


def _join_annotations(path: Path, subtype: str, examples: list[VqaExample], warnings: WarningCounter) -> None:
    """Fills the answers of `examples` from the annotations file; every question needs exactly one."""
    data = load_json(path)
    annotations = get_field(data, "annotations", path, None, list)
    ann_subtype = optional_field(data, "data_subtype", path, None, str)
    if ann_subtype is not None and ann_subtype != subtype:
        raise error(path, None, f"data_subtype {ann_subtype!r} differs from the questions file's {subtype!r}")
    by_id = {ex.question_id: ex for ex in examples}
    seen: dict[int, str] = {}
    for i, ann in enumerate(annotations):
        qid = get_field(ann, "question_id", path, f"annotations[{i}]", int)
        where = f"question {qid}"
        check_new(seen, qid, path, where, "annotation for question id", f"annotations[{i}]")
        ex = by_id.get(qid)
        if ex is None:
            raise error(path, where, "annotation for a question id that is not in the questions file")
        _fill_example(ex, ann, path, where, warnings)
    if len(seen) != len(examples):
        missing = [ex.question_id for ex in examples if ex.question_id not in seen]
        raise error(path, None, f"{len(missing)} question(s) have no annotation, e.g. {missing[:10]}")


_OPTIONAL_TEXT = ("question_type", "answer_type", "multiple_choice_answer")


def _fill_example(ex: VqaExample, ann: dict, path: Path, where: str, warnings: WarningCounter) -> None:
    image_id = optional_field(ann, "image_id", path, where, int)
    if image_id is not None and image_id != ex.image_id:
        raise error(path, where, f"image id {image_id} differs from the question's image id {ex.image_id}")
    answers = _human_answers(get_field(ann, "answers", path, where, list), path, where, warnings)
    qtype, atype, mc = (optional_field(ann, name, path, where, str) for name in _OPTIONAL_TEXT)
    if qtype is None or atype is None or mc is None:
        for name, value in zip(_OPTIONAL_TEXT, (qtype, atype, mc), strict=True):
            if value is None:
                warnings.add(f"annotation without {name}", where)
    if mc is None:
        mc = Counter(answers).most_common(1)[0][0]
    ex.answers, ex.question_type, ex.answer_type, ex.multiple_choice_answer = answers, qtype, atype, mc


def _human_answers(raw: list, path: Path, where: str, warnings: WarningCounter) -> tuple[str, ...]:
    if not raw:
        raise error(path, where, "no human answers")
    try:  # fast path: millions of answers; the checks below give the error message when it fails
        answers = tuple([a["answer"] for a in raw])
        well_formed = all(type(t) is str for t in answers)
    except (KeyError, TypeError):
        well_formed = False
    if not well_formed:
        for j, a in enumerate(raw):
            get_field(a, "answer", path, f"{where}: answers[{j}]", str)
    for text in answers:
        if not text.strip():
            warnings.add("blank human answer", where)
    if len(answers) != N_HUMAN_ANSWERS:
        warnings.add(f"not {N_HUMAN_ANSWERS} human answers", where)
    return answers


__all__ = [
    "IMAGE_SPLIT",
    "N_HUMAN_ANSWERS",
    "VqaExample",
    "VqaSplit",
    "coco_image_filename",
    "coco_image_id",
    "read_vqa",
]
