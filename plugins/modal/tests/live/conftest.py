"""The conformance suite against modal.com: ``test_modal_live.py`` runs ``suite_live.py`` here in a
child pytest, with the caller's own Modal credentials and no MODAL_SERVER_URL.

This directory holds no ``test_*`` module, so the ordinary test run only loads these fixtures.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator, Mapping
from typing import Any

import pytest
from sandboxkit_conformance import MakeSecret


@pytest.fixture(scope="session")
def sandboxkit_provider() -> str:
    """Provider "modal" against the real service (the emulator sets MODAL_SERVER_URL, so refuse it)."""
    if os.environ.get("MODAL_SERVER_URL"):
        pytest.fail("the live suite runs against modal.com: unset MODAL_SERVER_URL", pytrace=False)
    return "modal"


@pytest.fixture(scope="session")
def sandboxkit_create_options() -> dict[str, Any]:
    """Keep the live run's sandboxes in an app of their own."""
    return {"app": "sandboxkit-live-conformance"}


@pytest.fixture(scope="session")
def sandboxkit_gpus() -> list[str]:
    """One GPU of the cheapest kind (GPU tests run only when the caller opts in)."""
    return [os.environ.get("SANDBOXKIT_MODAL_LIVE_GPU_TYPE", "T4")]


@pytest.fixture
def sandboxkit_make_secret() -> Iterator[MakeSecret]:
    """Named secrets on Modal itself (``modal.Secret.objects``), deleted after the test."""
    import modal

    made: list[str] = []

    def make(values: Mapping[str, str]) -> str:
        name = f"sbk-live-{uuid.uuid4().hex[:8]}"
        modal.Secret.objects.create(name, dict(values))
        made.append(name)
        return name

    yield make
    for name in made:
        modal.Secret.objects.delete(name, allow_missing=True)
