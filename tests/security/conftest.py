"""Security tests: each carries an attack out for real, as root inside a real default sandbox.

Sandboxes carry this session's label (see the root conftest.py) and are reaped even when a test
fails; the tests need Docker and fail, never skip, without it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

import sandboxkit

#: The image every security test attacks from: the offline base image (Debian, python3, root).
IMAGE = "sandboxkit/base:bookworm"


@pytest.fixture
def sandbox(docker_engine: Any) -> Iterator[sandboxkit.Sandbox]:
    """A fresh default Docker sandbox of the offline base image, closed after the test."""
    with sandboxkit.Sandbox.create(
        provider="docker", image=IMAGE, timeout=600, provider_options={"pull": "never"}
    ) as sb:
        yield sb
