"""langchain-tests' standard sandbox suite against SandboxkitBackend on real providers.

The suite (langchain-tests 1.1.9) predates two deepagents 0.7 changes: it expects ``write`` to
refuse an existing file and glob matches relative to the searched directory (directories
included). The backend's defaults follow deepagents 0.7; the suite runs with the two switches
that select its contract (``overwrite=False``, ``glob_paths="relative"``).
test_deepagents_backend.py checks the defaults.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from langchain_tests.integration_tests import SandboxIntegrationTests

from sandboxkit import Sandbox
from sandboxkit.integrations.deepagents import SandboxkitBackend


class TestDockerStandard(SandboxIntegrationTests):
    @pytest.fixture(scope="class")
    @classmethod
    def sandbox(cls, docker_engine: object) -> Iterator[SandboxkitBackend]:
        with Sandbox.create("docker", timeout=900) as sb:
            yield SandboxkitBackend(sb, overwrite=False, glob_paths="relative")


class TestModalStandard(SandboxIntegrationTests):
    """Provider "modal": the real modal SDK, talking to the project's Modal emulator."""

    @pytest.fixture(scope="class")
    @classmethod
    def sandbox(cls, modal_env: None) -> Iterator[SandboxkitBackend]:
        with Sandbox.create("modal", timeout=900) as sb:
            yield SandboxkitBackend(sb, overwrite=False, glob_paths="relative")
