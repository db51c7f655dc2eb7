"""close() racing with commands: in-flight commands end with SANDBOX_NOT_FOUND, none hangs."""

from __future__ import annotations

import time
from typing import Any

import anyio
import pytest

import sandboxkit
from sandboxkit import ErrorCode, SandboxError

pytestmark = pytest.mark.docker


@pytest.mark.parametrize("fast", [True, False], ids=["fast path", "docker exec"])
def test_close_while_commands_run(docker_engine: Any, monkeypatch: Any, fast: bool) -> None:
    monkeypatch.setenv("SANDBOXKIT_DOCKER_FAST_EXEC", "1" if fast else "0")

    async def main() -> None:
        sb = await sandboxkit.AsyncSandbox.create(provider="docker", timeout=120)
        for _ in range(2):
            await sb.execute(["true"])
        outcomes: list[BaseException | sandboxkit.ExecResult] = []

        async def run(i: int) -> None:
            try:
                outcomes.append(await sb.execute(f"sleep {5 + i % 3}; echo never"))
            except SandboxError as exc:
                outcomes.append(exc)

        async with anyio.create_task_group() as tg:
            for i in range(10):
                tg.start_soon(run, i)
            await anyio.sleep(1.0)
            start = time.monotonic()
            with anyio.fail_after(30):
                await sb.close()
            assert time.monotonic() - start < 10
        assert len(outcomes) == 10
        for outcome in outcomes:
            assert isinstance(outcome, SandboxError), outcome
            assert outcome.code == ErrorCode.SANDBOX_NOT_FOUND, outcome
        with pytest.raises(SandboxError) as err:
            await sb.execute("echo after close")
        assert err.value.code == ErrorCode.SANDBOX_NOT_FOUND
        await sb.close()  # idempotent

    anyio.run(main)


def test_close_from_another_thread_during_a_stream(docker_engine: Any) -> None:
    sb = sandboxkit.Sandbox.create(provider="docker", timeout=120)
    for _ in range(2):
        sb.execute(["true"])
    got: list[str] = []
    with pytest.raises(SandboxError) as err:
        for chunk in sb.stream("for i in $(seq 1 100); do echo $i; sleep 0.1; done"):
            got.append(chunk.text)
            if len(got) == 3:
                sb.close()
    assert err.value.code == ErrorCode.SANDBOX_NOT_FOUND
    assert got[:3] == ["1\n", "2\n", "3\n"]
