"""Run the sandboxkit conformance suite against the dockercli provider."""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Iterator

import pytest
from sandboxkit_conformance import MakeVolume


@pytest.fixture(scope="session")
def sandboxkit_provider() -> str:
    return "dockercli"


@pytest.fixture(scope="session")
def sandboxkit_create_options() -> dict[str, object]:
    return {"image": "sandboxkit/base:bookworm"}


@pytest.fixture(scope="session")
def sandboxkit_expected_failures() -> dict[str, str]:
    return {}


@pytest.fixture
def sandboxkit_make_volume() -> Iterator[MakeVolume]:
    """Volumes are plain docker volumes: made and removed with the docker CLI."""
    made: list[str] = []

    def make() -> str:
        name = f"dockercli-test-{uuid.uuid4().hex[:10]}"
        subprocess.run(["docker", "volume", "create", name], check=True, capture_output=True)
        made.append(name)
        return name

    yield make
    for name in made:
        subprocess.run(["docker", "volume", "rm", "-f", name], capture_output=True)
