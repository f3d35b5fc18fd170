"""Helpers every sub-command module uses: JSON output and option checks naming the option."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def print_json(payload: object) -> None:
    print(json.dumps(payload, indent=2, default=float))


def positive_int(name: str):  # -> a type= callable for argparse naming the option in its error
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} must be an integer, got {text!r}") from None
        if value < 1:
            raise argparse.ArgumentTypeError(f"{name} must be >= 1, got {value}")
        return value

    return parse


def directory_option(option: str, path: str) -> Path:
    out = Path(path)
    if out.exists() and not out.is_dir():
        raise ValueError(f"{option} {path}: exists and is not a directory")
    return out


def weights_option(value: str | None) -> Path | None:
    """A --weights value: a shipped tower's short name (clip-vit-tiny, ...) becomes its file; else the path."""
    if not value:
        return None
    from clipvil.encoders.shipped import resolve_weights

    return Path(resolve_weights(value))  # type: ignore[arg-type]
