"""Result files in the format of the VQA and GQA evaluation servers, checked for completeness before writing.

VQA (EvalAI, VQA v2): ``[{"question_id": 262148000, "answer": "yes"}, ...]``. The server scores test-dev and
test-std from one upload of the whole test2015 question set, so even a test-dev submission needs an answer
for every question of ``v2_OpenEnded_mscoco_test2015_questions.json``; a test-dev2015 questions file is
refused for that reason (pass test2015, or use val2014 files for local evaluation).

GQA: ``[{"questionId": "20240871", "prediction": "yes"}, ...]``, one entry per question of the given questions
file (``submission_all_questions.json`` for the test server, or e.g. testdev_balanced for local scoring).

Both writers refuse (ValueError) when a question of the file has no prediction (the message says how many and
which) or a prediction is for a question id the file does not hold; predictions must be strings (TypeError). Entries
are written in the order of the questions file; the file appears complete or not at all.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

from clipvil.common.atomic import atomic_write_text
from clipvil.data.gqa import read_gqa
from clipvil.data.validate import PathLike
from clipvil.data.vqa import read_vqa

_SHOWN = 10  # question ids named in an error message


def write_vqa_submission(path: PathLike, predictions: Mapping[int, str], questions_path: PathLike) -> int:
    """Writes the VQA result file; returns the number of entries. The questions file defines the question set."""
    split = read_vqa(questions_path)
    if split.data_subtype == "test-dev2015":
        raise ValueError(
            f"{questions_path}: is the test-dev2015 questions file; the VQA server needs answers for all of "
            "test2015 even for a test-dev submission: pass v2_OpenEnded_mscoco_test2015_questions.json"
        )
    qids = [ex.question_id for ex in split.examples]
    answers = _complete(predictions, qids, questions_path, "answer")
    entries = [{"question_id": qid, "answer": answers[i]} for i, qid in enumerate(qids)]
    _write_json_atomic(Path(path), entries)
    return len(entries)


def write_gqa_submission(path: PathLike, predictions: Mapping[str, str], questions_path: PathLike) -> int:
    """Writes the GQA result file; returns the number of entries. Questions: a file or a directory of shards."""
    qids = [q.question_id for q in read_gqa(questions_path).questions]
    answers = _complete(predictions, qids, questions_path, "prediction")
    entries = [{"questionId": qid, "prediction": answers[i]} for i, qid in enumerate(qids)]
    _write_json_atomic(Path(path), entries)
    return len(entries)


def _complete(
    predictions: Mapping[int, str] | Mapping[str, str],
    qids: Sequence[int] | Sequence[str],
    source: PathLike,
    what: str,
) -> list[str]:
    """The predictions in question order; errors for missing, unknown or non-string predictions."""
    known = set(qids)
    unknown = [q for q in predictions if q not in known]
    if unknown:
        raise ValueError(
            f"{len(unknown)} prediction(s) for question ids not in {source}: {sorted(map(str, unknown))[:_SHOWN]}"
            " (wrong split, or ids of the wrong type?)"
        )
    missing = [q for q in qids if q not in predictions]
    if missing:
        raise ValueError(
            f"refusing to write: {len(missing)} of {len(qids)} questions of {source} have no {what}, "
            f"e.g. question ids {missing[:_SHOWN]}"
        )
    out = []
    for q in qids:
        value = predictions[q]  # type: ignore[index]
        if not isinstance(value, str):
            raise TypeError(
                f"question {q}: the {what} must be a string, got {type(value).__name__} {value!r:.40}"
            )
        out.append(value)
    return out


def _write_json_atomic(path: Path, entries: list[dict]) -> None:
    """A crash never leaves a truncated result file (clipvil.common.atomic)."""
    atomic_write_text(path, json.dumps(entries))


__all__ = ["write_gqa_submission", "write_vqa_submission"]
