"""inspect_ai's own sandbox conformance checks (``self_check``) against the "sandboxkit" sandbox.

The checks come from inspect_ai unchanged, run as inspect's own test runner runs them: one
environment per provider, made by ``task_init``/``sample_init``, with known failures as strict
xfails keyed by the check's name.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from inspect_ai.util import SandboxEnvironment
from inspect_ai.util._sandbox.self_check import *  # noqa: F403

from sandboxkit.integrations.inspect_ai import SandboxkitConfig, SandboxkitSandboxEnvironment

# both providers run on the engine (the Modal emulator's sandboxes too); the fixture asks for it late
pytestmark = pytest.mark.docker
ROOT_OVERWRITES = "the sandbox user is root, and root can overwrite a read-only file"

#: Per provider: checks it cannot pass, with the reason. Docker's are the ones inspect's own
#: docker-root runner lists.
XFAIL = {
    "docker": {
        "test_write_text_file_without_permissions": ROOT_OVERWRITES,
        "test_write_binary_file_without_permissions": ROOT_OVERWRITES,
    },
    "modal": {
        "test_exec_as_user": "Modal runs commands as the image's user: user= raises SandboxUserUnsupportedError",
        "test_write_text_file_without_permissions": ROOT_OVERWRITES,
        "test_write_binary_file_without_permissions": ROOT_OVERWRITES,
    },
}


@pytest_asyncio.fixture(scope="module", loop_scope="module", params=sorted(XFAIL))
async def provider_env(request: pytest.FixtureRequest) -> AsyncIterator[tuple[str, SandboxEnvironment]]:
    provider = request.param
    request.getfixturevalue("modal_env" if provider == "modal" else "docker_engine")
    task, config = f"self_check_{provider}", SandboxkitConfig(provider=provider)
    await SandboxkitSandboxEnvironment.task_init(task, config)
    envs = await SandboxkitSandboxEnvironment.sample_init(task, config, {})
    try:
        yield provider, envs["default"]
    finally:
        await SandboxkitSandboxEnvironment.sample_cleanup(task, config, envs, False)
        await SandboxkitSandboxEnvironment.task_cleanup(task, config, True)


@pytest.fixture
def sandbox_env(request: pytest.FixtureRequest, provider_env: tuple[str, SandboxEnvironment]) -> SandboxEnvironment:
    provider, env = provider_env
    reason = XFAIL[provider].get(request.node.originalname)
    if reason is not None:
        request.node.add_marker(pytest.mark.xfail(reason=reason, strict=True))
    return env
