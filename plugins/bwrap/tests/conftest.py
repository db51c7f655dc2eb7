"""The bwrap provider adopts the conformance suite exactly as a third-party provider would.

Its own tests share one fixture, ``make``, that creates sandboxes with this session's label and
closes them whatever happens; at session end every bwrap sandbox with the label is ended.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from sandboxkit import Sandbox

MakeSandbox = Callable[..., Sandbox]

# No GPU here: the provider reports GPU, and the GPU tests run, in simulate mode (a stand-in
# nvidia-smi). Set before any test asks the provider instance what it can honour.
os.environ["SANDBOXKIT_BWRAP_GPU"] = "simulate"


@pytest.fixture(scope="session")
def sandboxkit_provider() -> str:
    """The provider under test (its host checks fail with PROVIDER_UNAVAILABLE, never skip)."""
    return "bwrap"


@pytest.fixture(scope="session")
def sandboxkit_create_options() -> dict[str, Any]:
    """Every suite sandbox runs the offline base image's rootfs (bash, coreutils, procps, python3)."""
    return {"image": "sandboxkit/base:bookworm"}


@pytest.fixture(scope="session")
def sandboxkit_gpus() -> list[str]:
    """Simulated GPUs cost nothing: check one and several."""
    return ["T4", "A100:2"]


@pytest.fixture
def sandboxkit_gpu_options() -> dict[str, Any]:
    """Simulated even on a host with GPUs: the suite checks the request reaches nvidia-smi."""
    return {"provider_options": {"gpu_mode": "simulate"}}


@pytest.fixture
def make() -> Iterator[MakeSandbox]:
    """``make(**options)`` creates a bwrap sandbox that is closed after the test."""
    made: list[Sandbox] = []

    def create(**options: Any) -> Sandbox:
        sandbox = Sandbox.create(provider="bwrap", **options)
        made.append(sandbox)
        return sandbox

    yield create
    for sandbox in made:
        sandbox.close()


@pytest.fixture(scope="session", autouse=True)
def _reap_bwrap() -> Iterator[None]:
    """End every bwrap sandbox of this test session (its label), also after failures."""
    yield
    key, _, value = os.environ.get("SANDBOXKIT_LABELS", "").partition("=")
    if not key:
        return
    for info in Sandbox.list(provider="bwrap", labels={key: value}):
        Sandbox.from_id(info.id, provider="bwrap").close()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The bwrap tests start real sandboxes, for minutes: marked ``bwrap`` (``-m bwrap`` runs them on a
    machine with no engine) and, like every test that starts real sandboxes, ``docker``, so that
    ``-m "not docker"`` stays the in-process fast lane."""
    here = Path(__file__).parent
    for item in items:
        if item.path.parent == here:
            item.add_marker(pytest.mark.bwrap)
            item.add_marker(pytest.mark.docker)
