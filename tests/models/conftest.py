"""Fixtures of the model tests: one tiny head of each kind."""

from __future__ import annotations

import pytest
from vqa_heads_testlib import FACTORIES, HeadFactory


@pytest.fixture(params=sorted(FACTORIES))
def make_head(request: pytest.FixtureRequest) -> HeadFactory:
    """Builds a tiny head of each kind for a given grid width."""
    return FACTORIES[request.param]
