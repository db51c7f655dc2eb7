"""inspect_ai's own sandbox conformance checks (``self_check``) against the "sandboxkit" sandbox.

The checks come from inspect_ai unchanged, run as inspect's own test runner runs them: one
environment per module, made by the provider's ``task_init``/``sample_init``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from inspect_ai.util import SandboxEnvironment
from inspect_ai.util._sandbox.self_check import *  # noqa: F403

from sandboxkit.integrations.inspect_ai import SandboxkitConfig, SandboxkitSandboxEnvironment

#: Checks this configuration cannot pass, with the reason (the same ones inspect's docker-root runner lists).
XFAIL = {
    "test_write_text_file_without_permissions": "the sandbox user is root, and root can overwrite a read-only file",
    "test_write_binary_file_without_permissions": "the sandbox user is root, and root can overwrite a read-only file",
}


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def docker_env(docker_engine: object) -> AsyncIterator[SandboxEnvironment]:
    task, config = "self_check_docker", SandboxkitConfig(provider="docker")
    await SandboxkitSandboxEnvironment.task_init(task, config)
    envs = await SandboxkitSandboxEnvironment.sample_init(task, config, {})
    try:
        yield envs["default"]
    finally:
        await SandboxkitSandboxEnvironment.sample_cleanup(task, config, envs, False)
        await SandboxkitSandboxEnvironment.task_cleanup(task, config, True)


@pytest.fixture
def sandbox_env(request: pytest.FixtureRequest, docker_env: SandboxEnvironment) -> SandboxEnvironment:
    reason = XFAIL.get(request.node.originalname)
    if reason is not None:
        request.node.add_marker(pytest.mark.xfail(reason=reason, strict=True))
    return docker_env
