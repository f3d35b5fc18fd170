"""NLVR2 accuracy and consistency, as the official ``nlvr2/eval/metrics.py`` (lil-lab/nlvr) defines them.

- accuracy: the fraction of examples whose predicted truth value equals the label (the official script
  compares the lower-cased strings, so "TRUE" and "true" are the same prediction);
- consistency: the fraction of *sentence groups* all of whose examples are right. A group is the examples
  whose identifiers ``split-set_id-pair_id-sentence_id`` agree once the pair field is blanked
  (``dev-850-0-0`` and ``dev-850-2-0`` are both in ``dev-850--0``): one sentence, paired with several image
  pairs of its set.

Both are reported in percent (0-100, like the other clipvil metrics; the official script prints fractions).
The official script refuses a predictions file that misses examples. Here a prediction for an identifier
that is not in the labels is refused too, naming it, unless `allow_extra` (to score the predictions of the
whole dev set on the balanced / unbalanced subset, as the official ``compute_filtered_accuracy.py`` does);
``subset=True`` scores only the labelled examples that have a prediction (groups formed among them).
A prediction that is not true / false is an error here (metrics.py would silently count it wrong).

Prediction files: the official CSV (``identifier,prediction`` a line, True / False, no header) or a JSON list
``[{"identifier": str, "prediction": "True" | "False" | bool}]``.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from clipvil.metrics._checks import check_ids

_METRIC = "nlvr2"
_TRUTH = {"true": True, "false": False}


@dataclass(frozen=True)
class Nlvr2Scores:
    """Accuracy and consistency in percent, with the counts they are made of."""

    accuracy: float
    consistency: float
    n_examples: int  # examples scored
    n_correct: int
    n_groups: int  # sentence groups among the scored examples
    n_consistent: int  # groups all of whose examples are right

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary."""
        return {
            "accuracy": self.accuracy,
            "consistency": self.consistency,
            "n_examples": self.n_examples,
            "n_correct": self.n_correct,
            "n_groups": self.n_groups,
            "n_consistent": self.n_consistent,
        }


def consistency_key(identifier: str) -> str:
    """The sentence group of an identifier: its dash-separated fields with the third (pair id) blanked."""
    fields = identifier.split("-")
    if len(fields) < 3:
        raise ValueError(f"{_METRIC}: identifier {identifier!r} has fewer than 3 dash-separated fields")
    fields[2] = ""
    return "-".join(fields)


def truth_value(value: object, where: str) -> bool:
    """A prediction or label as a bool: a JSON boolean or "true" / "false" in any case; ValueError otherwise."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in _TRUTH:
        return _TRUTH[value.strip().lower()]
    raise ValueError(f"{where}: {value!r} is not True or False")


def nlvr2_scores(
    predictions: Mapping[str, bool],
    labels: Mapping[str, bool],
    *,
    subset: bool = False,
    allow_extra: bool = False,
) -> Nlvr2Scores:
    """Accuracy and consistency of {identifier: predicted truth} against {identifier: label}.

    subset: score only the labelled examples that have a prediction (otherwise a missing one is an error).
    allow_extra: ignore predictions for identifiers that are not in `labels` (otherwise an error naming them).
    """
    if not subset:
        check_ids(_METRIC, predictions, labels, allow_extra=allow_extra, item="example")
    elif not allow_extra:
        check_ids(_METRIC, predictions, {k: None for k in predictions if k in labels}, allow_extra=False,
                  item="example")
    scored = [k for k in labels if k in predictions]
    if not scored:
        raise ValueError(f"{_METRIC}: no example to score")
    groups: dict[str, bool] = {}
    correct = 0
    for identifier in scored:
        gold = truth_value(labels[identifier], f"{_METRIC}: label of {identifier}")
        right = truth_value(predictions[identifier], f"{_METRIC}: prediction for {identifier}") == gold
        correct += right
        key = consistency_key(identifier)
        groups[key] = groups.get(key, True) and right
    consistent = sum(groups.values())
    return Nlvr2Scores(
        accuracy=100.0 * correct / len(scored),
        consistency=100.0 * consistent / len(groups),
        n_examples=len(scored),
        n_correct=correct,
        n_groups=len(groups),
        n_consistent=consistent,
    )


def labels_from_rows(rows: Iterable[Mapping[str, Any]], source: str = "annotations") -> dict[str, bool]:
    """{identifier: label} from NLVR2 JSON-lines rows (plain dicts), with duplicate identifiers refused."""
    out: dict[str, bool] = {}
    for index, row in enumerate(rows):
        identifier = row.get("identifier")
        if not isinstance(identifier, str) or not identifier:
            raise ValueError(f"{source}: row {index}: needs a non-empty string 'identifier'")
        if identifier in out:
            raise ValueError(f"{source}: row {index}: duplicate identifier {identifier}")
        out[identifier] = truth_value(row.get("label"), f"{source}: row {index}: label of {identifier}")
    return out


def read_nlvr2_predictions(path: str | Path) -> dict[str, bool]:
    """{identifier: prediction} from the official CSV or a JSON list (chosen by the first character)."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"{p}: no such file")
    text = p.read_text(encoding="utf-8")
    if text.lstrip().startswith("["):
        return _from_json(text, p)
    return _from_csv(text, p)


def _add(out: dict[str, bool], identifier: object, value: object, where: str) -> None:
    if not isinstance(identifier, str) or not identifier.strip():
        raise ValueError(f"{where}: the identifier must be a non-empty string, got {identifier!r}")
    identifier = identifier.strip()
    if identifier in out:
        raise ValueError(f"{where}: duplicate identifier {identifier}")
    out[identifier] = truth_value(value, f"{where}: prediction for {identifier}")


def _from_csv(text: str, path: Path) -> dict[str, bool]:
    out: dict[str, bool] = {}
    for lineno, row in enumerate(csv.reader(text.splitlines()), start=1):
        if not row or not "".join(row).strip():
            continue
        if len(row) != 2:
            raise ValueError(f"{path}: line {lineno}: expected 'identifier,prediction', got {len(row)} field(s)")
        _add(out, row[0], row[1], f"{path}: line {lineno}")
    return out


def _from_json(text: str, path: Path) -> dict[str, bool]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: invalid JSON at line {e.lineno} column {e.colno}: {e.msg}") from None
    out: dict[str, bool] = {}
    for index, row in enumerate(data):
        where = f"{path}: entry {index}"
        if not isinstance(row, dict) or "identifier" not in row or "prediction" not in row:
            raise ValueError(f"{where}: needs the fields ['identifier', 'prediction']")
        _add(out, row["identifier"], row["prediction"], where)
    return out


__all__ = [
    "Nlvr2Scores",
    "consistency_key",
    "labels_from_rows",
    "nlvr2_scores",
    "read_nlvr2_predictions",
    "truth_value",
]
