"""The one atomic-write helper: readers see the old file or the new one, never half of one — even after a
crash or a power cut (the temporary file and its directory are fsynced around the rename)."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any


def fsync_dir(directory: str | Path) -> None:
    """Makes a rename inside `directory` durable (no-op where directories cannot be opened)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def temporary_name(path: Path) -> Path:
    """The temporary file `atomic_write` uses for `path` (hidden, per process; cleaned by `remove_temporaries`)."""
    return path.with_name(f".{path.name}.tmp-{os.getpid()}")


def atomic_write(path: str | Path, write: Callable[[Path], Any], tmp: Path | None = None) -> None:
    """Calls `write(tmp)` to fill a temporary file beside `path`, fsyncs it, renames it over `path` and fsyncs
    the directory. On any error the temporary file is removed and `path` is left as it was. `tmp` names the
    temporary file when the caller cleans up its own leftovers by name (default: `temporary_name(path)`)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = tmp or temporary_name(path)
    try:
        write(tmp)
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)  # atomic on POSIX
        fsync_dir(path.parent)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Writes `data` to `path` atomically and durably."""
    atomic_write(path, lambda tmp: tmp.write_bytes(data))


def atomic_write_text(path: str | Path, text: str) -> None:
    """Writes `text` (UTF-8) to `path` atomically and durably."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | Path, payload: Any, *, lines: bool = False, indent: int | None = None) -> None:
    """Writes `payload` as JSON (or, with `lines`, each item of a list on its own line) atomically."""
    if lines:
        text = "".join(json.dumps(item, default=_plain) + "\n" for item in payload)
    else:
        text = json.dumps(payload, indent=indent, default=_plain) + "\n"
    atomic_write_text(path, text)


def remove_temporaries(directory: str | Path) -> None:
    """Deletes temporary files left in `directory` by a process killed while writing."""
    directory = Path(directory)
    if directory.is_dir():
        for tmp in directory.glob(".*.tmp-*"):
            tmp.unlink(missing_ok=True)


def _plain(value: Any) -> Any:
    if hasattr(value, "item"):  # numpy / torch scalars
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
