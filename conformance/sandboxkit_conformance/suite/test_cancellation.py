"""Cancellation: a cancelled ``execute`` and a stream left early kill the command's whole tree.

Every check reads heartbeats from a later command (see ``_support.heartbeat_command``): a process
that still runs keeps bumping its counter, whatever the provider's PID layout.
"""

from __future__ import annotations

import asyncio
import time

import anyio
import pytest

from sandboxkit import AsyncSandbox, Capability, Sandbox
from sandboxkit_conformance._target import ConformanceTarget, requires
from sandboxkit_conformance.suite._support import (
    KILL_WITHIN,
    STILL,
    heartbeat_command,
    heartbeat_names,
    parse_beats,
    still_beating,
    unique,
    wait_beating,
)

__all__ = ["TestCancellation"]


async def _beats(sandbox: AsyncSandbox, directory: str) -> dict[str, int]:
    script = 'for f in "$1"/*; do [ -f "$f" ] && printf "%s %s\\n" "${f##*/}" "$(cat "$f")"; done; true'
    out = (await sandbox.execute(["sh", "-c", script, "sh", directory], timeout=60)).stdout
    return parse_beats(out)


async def _wait_beating(sandbox: AsyncSandbox, directory: str, names: set[str]) -> None:
    seen: dict[str, int] = {}
    with anyio.move_on_after(60):
        while not all(seen.get(n, 0) >= 2 for n in names):
            seen.update(await _beats(sandbox, directory))
            await anyio.sleep(0.2)
    if not all(seen.get(n, 0) >= 2 for n in names):
        pytest.fail(f"the heartbeat command never started all its processes {sorted(names)}: saw {seen}")


async def _still_beating(sandbox: AsyncSandbox, directory: str, by: float) -> list[str]:
    """As ``_support.still_beating``, on the caller's event loop."""

    async def moving() -> list[str]:
        first = await _beats(sandbox, directory)
        await anyio.sleep(STILL)
        second = await _beats(sandbox, directory)
        return sorted(n for n, v in second.items() if v != first.get(n))

    started = time.monotonic()
    alive = await moving()
    if alive and started < by:
        await anyio.sleep(max(0.0, by - time.monotonic()))
        alive = await moving()
    return alive


async def _has_setsid(sandbox: AsyncSandbox) -> bool:
    return (await sandbox.execute("command -v setsid")).exit_code == 0


class TestCancellation:
    """Every provider: cancelling a running command (or leaving its stream) kills its whole tree within 2 s."""

    def test_a_cancelled_execute_kills_the_tree(self, conformance: ConformanceTarget) -> None:
        async def scenario() -> None:
            async with await AsyncSandbox.create(conformance.provider, **conformance.options()) as sandbox:
                detached = await _has_setsid(sandbox)
                names = heartbeat_names(detached)
                for how in ("a cancel scope", "asyncio.wait_for"):
                    directory = f"/tmp/{unique('hb')}"
                    command = heartbeat_command(directory, detached=detached)

                    async def run(command: str = command) -> None:
                        await sandbox.execute(command, timeout=600)

                    if how == "a cancel scope":
                        async with anyio.create_task_group() as tg:
                            tg.start_soon(run)
                            await _wait_beating(sandbox, directory, names)
                            tg.cancel_scope.cancel()
                    else:
                        task = asyncio.ensure_future(run())
                        await _wait_beating(sandbox, directory, names)
                        with pytest.raises(TimeoutError):
                            await asyncio.wait_for(task, timeout=0.01)
                    cancelled = time.monotonic()
                    alive = await _still_beating(sandbox, directory, cancelled + KILL_WITHIN)
                    assert not alive, (
                        f"after cancelling execute() through {how}, processes of the command still ran "
                        f"{KILL_WITHIN:g}s later: {alive} (a cancelled exec must kill the whole tree)"
                    )
                assert (await sandbox.execute("echo alive")).stdout == "alive\n", "the sandbox survives a cancel"

        anyio.run(scenario)

    @requires(Capability.STREAMING)
    def test_leaving_a_stream_early_kills_the_tree(self, shared_sandbox: Sandbox) -> None:
        detached = shared_sandbox.execute("command -v setsid").exit_code == 0
        directory = f"/tmp/{unique('hb')}"
        command = f"echo started; {heartbeat_command(directory, detached=detached)}"
        for chunk in shared_sandbox.stream(command, timeout=600):
            assert chunk.text.startswith("started")
            wait_beating(shared_sandbox, directory, heartbeat_names(detached))
            break
        left = time.monotonic()
        alive = still_beating(shared_sandbox, directory, by=left + KILL_WITHIN)
        assert not alive, f"after a `break` out of stream(), processes of the command still ran: {alive}"
        assert shared_sandbox.execute("echo alive").stdout == "alive\n", "the sandbox stays usable"

    @requires(Capability.STREAMING)
    def test_leaving_an_async_stream_early_kills_the_tree_and_raises_nothing(
        self, conformance: ConformanceTarget
    ) -> None:
        async def scenario() -> None:
            async with await AsyncSandbox.create(conformance.provider, **conformance.options()) as sandbox:
                detached = await _has_setsid(sandbox)
                directory = f"/tmp/{unique('hb')}"
                command = f"echo started; {heartbeat_command(directory, detached=detached)}"
                async for chunk in sandbox.stream(command, timeout=600):
                    assert chunk.text.startswith("started")
                    await _wait_beating(sandbox, directory, heartbeat_names(detached))
                    break
                left = time.monotonic()
                for _ in range(5):  # a stray CancelledError would surface at one of these awaits
                    await asyncio.sleep(0.05)
                alive = await _still_beating(sandbox, directory, left + KILL_WITHIN)
                assert not alive, f"after a `break` out of `async for ... in stream()`, the command still ran: {alive}"
                assert (await sandbox.execute("echo alive")).stdout == "alive\n", "the sandbox stays usable"

        try:
            anyio.run(scenario)
        except asyncio.CancelledError:  # pragma: no cover - the bug this test exists for
            pytest.fail("leaving an async stream early delivered a CancelledError into the caller's task")
