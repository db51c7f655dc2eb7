"""A sandbox killed or removed from outside: the next call says SANDBOX_NOT_FOUND, and never hangs.

Both exec paths are covered: the fast path (the agent's stream ends with the container) and
plain ``docker exec`` (the busybox image has no python, so it never gets an agent).
"""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

import sandboxkit
from sandboxkit import ErrorCode, SandboxError

pytestmark = pytest.mark.docker

IMAGES = {"fast path": None, "docker exec": "sandboxkit/busybox:latest"}


def warm_sandbox(image: str | None) -> sandboxkit.Sandbox:
    sb = sandboxkit.Sandbox.create(provider="docker", image=image, timeout=120)
    for _ in range(3):
        sb.execute(["true"])
    return sb


def kill_from_outside(client: Any, sb: sandboxkit.Sandbox, how: str) -> None:
    if how == "kill":
        client.api.kill(sb.id)
    else:
        client.api.remove_container(sb.id, force=True)


@pytest.mark.parametrize("how", ["kill", "rm -f"])
@pytest.mark.parametrize("path", IMAGES)
def test_idle_sandbox_killed_from_outside(docker_engine: Any, path: str, how: str) -> None:
    sb = warm_sandbox(IMAGES[path])
    try:
        kill_from_outside(docker_engine, sb, how)
        calls = (
            lambda: sb.execute("echo hi"),
            lambda: sb.read_file("/etc/hostname"),
            lambda: sb.write_file("/tmp/x", b"x"),
        )
        for call in calls:
            start = time.monotonic()
            with pytest.raises(SandboxError) as err:
                call()
            assert err.value.code == ErrorCode.SANDBOX_NOT_FOUND, err.value
            assert time.monotonic() - start < 10
    finally:
        sb.close()  # idempotent on a sandbox that is already gone


@pytest.mark.parametrize("path", IMAGES)
def test_sandbox_killed_mid_command(docker_engine: Any, path: str) -> None:
    sb = warm_sandbox(IMAGES[path])
    outcome: list[BaseException | sandboxkit.ExecResult] = []

    def run() -> None:
        try:
            outcome.append(sb.execute("sleep 60"))
        except BaseException as exc:
            outcome.append(exc)

    worker = threading.Thread(target=run)
    worker.start()
    try:
        time.sleep(1.0)
        start = time.monotonic()
        docker_engine.api.kill(sb.id)
        worker.join(15)
        assert not worker.is_alive(), "the command's call hung after its sandbox was killed"
        assert time.monotonic() - start < 15
        (result,) = outcome
        assert isinstance(result, SandboxError), result
        assert result.code == ErrorCode.SANDBOX_NOT_FOUND, result
    finally:
        sb.close()
