"""AsyncExecStream without a provider: leaving the loop early cancels the command's task, and nothing else."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import anyio
import pytest

from sandboxkit import AsyncExecStream, ErrorCode, ExecResult, OutputChunk, SandboxError

Forward = Callable[[OutputChunk], Awaitable[None]]


def _chunk(text: str) -> OutputChunk:
    return OutputChunk(stream="stdout", data=text.encode(), text=text)


def _endless(cancelled: anyio.Event) -> Callable[[Forward], Awaitable[ExecResult]]:
    async def start(forward: Forward) -> ExecResult:
        await forward(_chunk("first\n"))
        try:
            await anyio.sleep_forever()
        finally:
            cancelled.set()  # where a provider kills the command
        raise AssertionError("unreachable")

    return start


def test_break_cancels_the_command_and_no_cancellation_reaches_the_caller() -> None:
    async def scenario() -> None:
        cancelled = anyio.Event()
        async for chunk in AsyncExecStream(_endless(cancelled)):
            assert chunk.text == "first\n"
            break
        with anyio.fail_after(5):
            await cancelled.wait()
        for _ in range(3):
            await asyncio.sleep(0.01)  # a stray CancelledError would land here

    asyncio.run(scenario())


def test_aclose_waits_for_the_kill() -> None:
    async def scenario() -> None:
        cancelled = anyio.Event()
        stream = AsyncExecStream(_endless(cancelled))
        chunks = aiter(stream)
        assert (await anext(chunks)).text == "first\n"
        await stream.aclose()
        assert cancelled.is_set(), "aclose() returns once the command's task has ended"
        with pytest.raises(StopAsyncIteration):
            await anext(chunks)

    asyncio.run(scenario())


def test_a_failure_is_raised_after_the_output() -> None:
    async def start(forward: Forward) -> ExecResult:
        await forward(_chunk("partial\n"))
        raise SandboxError(ErrorCode.COMMAND_TIMEOUT, "too slow")

    async def scenario() -> list[str]:
        seen: list[str] = []
        with pytest.raises(SandboxError, match="too slow"):
            async for chunk in AsyncExecStream(start):
                seen.append(chunk.text)
        return seen

    assert asyncio.run(scenario()) == ["partial\n"]


def test_a_stream_iterates_once() -> None:
    stream = AsyncExecStream(_endless(anyio.Event()))
    aiter(stream)
    with pytest.raises(RuntimeError, match="only once"):
        aiter(stream)


def test_outside_asyncio_it_says_to_use_execute() -> None:
    chunks = aiter(AsyncExecStream(_endless(anyio.Event())))
    step = anext(chunks)
    with pytest.raises(SandboxError) as caught:
        step.send(None)  # driven by hand, as another event loop would: there is no running asyncio loop
    assert caught.value.code == ErrorCode.CAPABILITY_NOT_SUPPORTED
    assert "execute()" in caught.value.message
