"""Helpers for the clipvil.data reader tests: small (often broken) files written under tmp_path."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

FIXTURES = Path(__file__).resolve().parent / "fixtures"


@pytest.fixture
def write_json(tmp_path: Path) -> Callable[[str, Any], Path]:
    """write_json(name, obj) -> path of tmp_path/name holding obj as JSON (raw text when obj is a str)."""

    def write(name: str, obj: Any) -> Path:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(obj if isinstance(obj, str) else json.dumps(obj), encoding="utf-8")
        return path

    return write


@pytest.fixture
def fixtures_dir() -> Path:
    """tests/data/fixtures (see its README.md)."""
    return FIXTURES
