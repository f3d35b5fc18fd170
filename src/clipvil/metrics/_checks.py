"""Input checks shared by the metrics: predictions must cover the references, with errors that name the ids."""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Mapping
from typing import Any

_SHOWN = 5


def _examples(ids: Iterable[Hashable]) -> str:
    shown = sorted(ids, key=repr)[:_SHOWN]
    return ", ".join(repr(i) for i in shown)


def check_ids(
    metric: str,
    predictions: Mapping[Any, Any],
    references: Mapping[Any, Any],
    *,
    allow_extra: bool,
    item: str = "question",
) -> None:
    """Raises ValueError naming the ids when a reference has no prediction (or, unless allowed, the reverse).

    A frequent cause is keys of different types (JSON object keys are always strings, VQA question ids are
    ints), so the message says so when no key matches at all.
    """
    missing = references.keys() - predictions.keys()
    extra = set() if allow_extra else predictions.keys() - references.keys()
    if not missing and not extra:
        return
    parts = []
    if missing:
        parts.append(f"no prediction for {len(missing)} {item}(s) (e.g. {_examples(missing)})")
    if extra:
        parts.append(f"{len(extra)} prediction(s) for unknown {item}(s) (e.g. {_examples(extra)})")
    message = f"{metric}: " + "; ".join(parts)
    pred_types = {type(k).__name__ for k in predictions}
    ref_types = {type(k).__name__ for k in references}
    if predictions and references and pred_types != ref_types and len(missing) == len(references):
        message += f" -- prediction ids are {sorted(pred_types)} but reference ids are {sorted(ref_types)}"
    raise ValueError(message)


def check_text(metric: str, kind: str, key: Hashable, value: object) -> str:
    """The value as a str, or a ValueError naming the item when it is not one."""
    if not isinstance(value, str):
        raise ValueError(f"{metric}: {kind} {key!r}: expected a string, got {type(value).__name__}")
    return value
