"""Shared checks for the readers: errors that name the file and the entry, and counted warnings.

Every reader in clipvil.data validates while it reads. Two outcomes for bad input:

- an error (`DataFormatError`, a `ValueError`) whose message starts with the file and the entry, e.g.
  ``DataFormatError: /data/questions.json: question 123: empty question``;
- a counted warning, for oddities the official data really contains (e.g. VQA answers that normalise to
  the empty string): the entry is kept, the reader counts it under a short kind name, logs one line per kind
  on the ``clipvil.data`` logger and returns the counts with its result. Nothing is ever dropped silently.
"""

from __future__ import annotations

import gc
import json
import logging
from collections.abc import Collection, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

logger = logging.getLogger("clipvil.data")

PathLike = str | Path
_MAX_EXAMPLES = 3  # entries named per warning kind in the log line
_MISSING = object()


class DataFormatError(ValueError):
    """A data file breaks its format; the message names the file and the entry."""


def error(path: PathLike, entry: str | None, message: str) -> DataFormatError:
    """The error for `entry` (e.g. "question 123") of `path`; `entry` None means the file as a whole."""
    where = f"{path}: {entry}" if entry else f"{path}"
    return DataFormatError(f"{where}: {message}")


@contextmanager
def no_gc() -> Iterator[None]:
    """Pauses the cyclic garbage collector: parsing a large JSON file allocates millions of containers and
    would otherwise trigger a full collection again and again (about a third of the load time)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def load_json(path: PathLike, object_pairs_hook: Any = None) -> Any:
    """Parsed JSON of `path`; FileNotFoundError or DataFormatError (with line and column) otherwise."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"{p}: no such file")
    with p.open("rb") as f, no_gc():
        try:
            return json.load(f, object_pairs_hook=object_pairs_hook)
        except json.JSONDecodeError as e:
            raise error(p, None, f"invalid JSON at line {e.lineno} column {e.colno}: {e.msg}") from None
        except UnicodeDecodeError as e:
            raise error(p, None, f"not UTF-8 text: {e}") from None


def iter_jsonl(path: PathLike) -> Iterator[tuple[int, Any]]:
    """(line number from 1, parsed object) for each non-blank line of a JSON-lines file."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"{p}: no such file")
    with p.open("r", encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                yield lineno, json.loads(line.rstrip("\r\n"))
            except json.JSONDecodeError as e:
                raise error(p, f"line {lineno}", f"invalid JSON at column {e.colno}: {e.msg}") from None


def expect_type(
    value: Any, kind: type | tuple[type, ...], path: PathLike, entry: str | None, what: str
) -> Any:
    """`value` when it is an instance of `kind` (bool never counts as int); an error naming `what` otherwise."""
    if type(value) is kind:  # fast path: the exact type (readers call this millions of times)
        return value
    kinds = kind if isinstance(kind, tuple) else (kind,)
    ok = isinstance(value, kinds) and not (isinstance(value, bool) and bool not in kinds)
    if not ok:
        names = " or ".join(k.__name__ for k in kinds)
        raise error(path, entry, f"{what} must be {names}, got {type(value).__name__} {value!r:.60}")
    return value


def get_field(obj: Any, key: str, path: PathLike, entry: str | None, kind: type | tuple[type, ...]) -> Any:
    """obj[key], checked: an error when obj is not an object, the field is missing or of the wrong type."""
    if type(obj) is not dict and not isinstance(obj, Mapping):
        raise error(path, entry, f"expected a JSON object, got {type(obj).__name__}")
    value = obj.get(key, _MISSING)
    if value is _MISSING:
        raise error(path, entry, f"missing field '{key}'")
    if type(value) is kind:
        return value
    return expect_type(value, kind, path, entry, f"field '{key}'")


def optional_field(
    obj: Mapping, key: str, path: PathLike, entry: str | None, kind: type | tuple[type, ...]
) -> Any:
    """obj[key] checked like `get_field`, or None when the key is absent (or null)."""
    value = obj.get(key)
    if value is None or type(value) is kind:
        return value
    return expect_type(value, kind, path, entry, f"field '{key}'")


def check_image(image_id: Any, image_ids: Collection[Any] | None, path: PathLike, entry: str) -> None:
    """An error when an image-id set is given and `image_id` is not in it."""
    if image_ids is not None and image_id not in image_ids:
        raise error(path, entry, f"unknown image id {image_id!r} (not in the given image-id set)")


def check_new(seen: dict[Any, str], key: Any, path: PathLike, entry: str, what: str, position: str) -> None:
    """Records where `key` was seen (`position`, e.g. "questions[3]" or "line 7"); an error naming both
    positions when it was seen before."""
    first = seen.get(key)
    if first is not None:
        raise error(path, entry, f"duplicate {what} {key!r} (at {position}; first at {first})")
    seen[key] = position


class WarningCounter:
    """Counts kept-but-odd entries of one read under short kind names, with the first few entries of each."""

    def __init__(self, source: PathLike) -> None:
        self.source = str(source)
        self.counts: dict[str, int] = {}
        self._examples: dict[str, list[str]] = {}

    def add(self, kind: str, entry: str) -> None:
        """Counts one entry (e.g. "question 123") under `kind` (e.g. "blank human answer")."""
        self.counts[kind] = self.counts.get(kind, 0) + 1
        examples = self._examples.setdefault(kind, [])
        if len(examples) < _MAX_EXAMPLES:
            examples.append(entry)

    def examples(self, kind: str) -> list[str]:
        """The first entries counted under `kind`."""
        return list(self._examples.get(kind, []))

    def emit(self) -> dict[str, int]:
        """Logs one WARNING line per kind on the ``clipvil.data`` logger; returns a copy of the counts."""
        for kind, n in self.counts.items():
            shown = ", ".join(self._examples[kind])
            logger.warning("%s: %d x %s (e.g. %s)", self.source, n, kind, shown)
        return dict(self.counts)
