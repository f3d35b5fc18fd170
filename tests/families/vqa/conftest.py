"""Fixtures of the model tests: one tiny head of each kind."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch
from vqa_heads_testlib import FACTORIES, HeadFactory


@pytest.fixture(params=sorted(FACTORIES))
def make_head(request: pytest.FixtureRequest) -> HeadFactory:
    """Builds a tiny head of each kind for a given grid width."""
    return FACTORIES[request.param]


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    """Tiny models gain nothing from threads; on a shared 2-core machine spinning threads slow them down."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
