"""Shared fixtures: the real data beside the repository, and a deterministic torch."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("CLIPVIL_SHARED_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Path of ../shared/data (the real samples listed in its SOURCES.md)."""
    if not SHARED_DATA.is_dir():
        raise FileNotFoundError(f"real test data not found at {SHARED_DATA}: clone the repo beside shared/")
    return SHARED_DATA


@pytest.fixture(autouse=True)
def _torch_threads() -> None:
    import torch

    torch.manual_seed(0)
