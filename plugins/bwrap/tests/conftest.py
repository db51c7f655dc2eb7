"""The bwrap provider adopts the conformance suite exactly as a third-party provider would."""

from __future__ import annotations

from typing import Any

import pytest


@pytest.fixture(scope="session")
def sandboxkit_provider() -> str:
    """The provider under test (its host checks fail with PROVIDER_UNAVAILABLE, never skip)."""
    return "bwrap"


@pytest.fixture(scope="session")
def sandboxkit_create_options() -> dict[str, Any]:
    """Every suite sandbox runs the offline base image's rootfs (bash, coreutils, procps, python3)."""
    return {"image": "sandboxkit/base:bookworm"}


@pytest.fixture(scope="session")
def sandboxkit_expected_failures() -> dict[str, str]:
    """Known failures of the bwrap provider; each runs as strict xfail until it is fixed."""
    return {}
