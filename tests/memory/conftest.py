"""The in-process ``memory`` provider adopts the conformance suite the way any provider does."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def sandboxkit_provider() -> str:
    """The provider under test: no engine, no account."""
    return "memory"
