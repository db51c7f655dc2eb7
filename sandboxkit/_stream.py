"""AsyncExecStream: a command's live output, with the command in its own task.

No task group spans a ``yield``: the command runs in a task of its own and hands chunks over a
memory stream. Leaving the loop early (``break``, an exception, the consumer being cancelled)
drops the iterator, which cancels that task, and a cancelled ``exec`` kills the command. So no
cancellation ever reaches the consumer's task from here, and ``aclose()`` waits for the kill.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import threading
import weakref
from collections.abc import Awaitable, Callable, Iterator

import anyio
from anyio.streams.memory import MemoryObjectSendStream

from sandboxkit import _portal
from sandboxkit._errors import ErrorCode, SandboxError
from sandboxkit._types import ExecResult, OutputChunk

Forward = Callable[[OutputChunk], Awaitable[None]]
Start = Callable[[Forward], Awaitable[ExecResult]]


class AsyncExecStream:
    """Live output of one command; iterate it once. ``result`` is set when it ends.

    Leaving the loop early kills the command (soon after; ``await stream.aclose()`` waits for it).
    Needs the asyncio backend.
    """

    def __init__(self, start: Start) -> None:
        self._start = start
        self.result: ExecResult | None = None
        self._chunks: weakref.ref[_Chunks] | None = None

    def __aiter__(self) -> _Chunks:
        if self._chunks is not None:
            raise RuntimeError("an exec stream can be iterated only once")
        chunks = _Chunks(self)
        self._chunks = weakref.ref(chunks)
        return chunks

    async def aclose(self) -> None:
        """Stop the command if it still runs, and wait until it is killed."""
        chunks = self._chunks() if self._chunks is not None else None
        if chunks is not None:
            await chunks.aclose()


async def _pump(start: Start, send: MemoryObjectSendStream[OutputChunk], sink: _Sink) -> None:
    """The command's task. It holds no reference to the iterator, so dropping the iterator frees it."""
    async with send:
        try:
            sink.result = await start(send.send)
        except Exception as exc:
            sink.failure = exc


class _Sink:
    """Where the command's task leaves its outcome (result or failure)."""

    def __init__(self, owner: AsyncExecStream) -> None:
        self.owner = owner
        self.failure: BaseException | None = None

    @property
    def result(self) -> ExecResult | None:
        return self.owner.result

    @result.setter
    def result(self, value: ExecResult | None) -> None:
        self.owner.result = value


class _Chunks:
    """The iterator: starts the command's task on first use, cancels it when dropped or closed."""

    def __init__(self, owner: AsyncExecStream) -> None:
        self._owner = owner
        self._send, self._recv = anyio.create_memory_object_stream[OutputChunk](64)
        self._sink = _Sink(owner)
        self._task: asyncio.Task[None] | None = None
        self._finished = False

    def __aiter__(self) -> _Chunks:
        return self

    async def __anext__(self) -> OutputChunk:
        if self._finished:
            raise StopAsyncIteration
        if self._task is None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                raise SandboxError(
                    ErrorCode.CAPABILITY_NOT_SUPPORTED,
                    "stream() runs on the asyncio event loop only; use execute() on other loops (trio)",
                ) from None
            self._task = loop.create_task(_pump(self._owner._start, self._send, self._sink))
            self._task.add_done_callback(_retrieve)
        try:
            return await self._recv.receive()
        except anyio.EndOfStream:
            pass
        await self._task  # the command ended; cancelling the consumer here cancels (kills) nothing left
        self._finished = True
        self._recv.close()
        if self._sink.failure is not None:
            raise self._sink.failure
        raise StopAsyncIteration

    async def aclose(self) -> None:
        """Cancel the command's task and wait for it (shielded: the kill must finish)."""
        self._finished = True
        self._recv.close()
        task = self._task
        if task is not None and not task.done():
            task.cancel()
            with anyio.CancelScope(shield=True):
                await asyncio.wait([task])

    def __del__(self) -> None:
        self._recv.close()
        task = self._task
        if task is None:
            self._send.close()
        elif task is not None and not task.done():
            loop = task.get_loop()
            if not loop.is_closed():
                loop.call_soon_threadsafe(task.cancel)


def _retrieve(task: asyncio.Task[None]) -> None:
    """Mark a cancelled or failed command task's outcome as seen (no 'never retrieved' warning)."""
    if not task.cancelled():
        task.exception()


__all__ = ["AsyncExecStream"]


#: How long leaving a stream early waits for its command to be killed.
STOP_WAIT = 60.0


class ExecStream:
    """Blocking iterator over a command's live output; ``result`` is set when it ends."""

    def __init__(self, inner: AsyncExecStream) -> None:
        self._inner = inner

    @property
    def result(self) -> ExecResult | None:
        """The ExecResult, once the output is exhausted."""
        return self._inner.result

    def __iter__(self) -> Iterator[OutputChunk]:
        portal = _portal.portal()
        send, recv = anyio.create_memory_object_stream[OutputChunk](64)
        failure: builtins.list[BaseException] = []
        pumped = threading.Event()

        async def pump() -> None:
            try:
                async with send, contextlib.aclosing(aiter(self._inner)) as chunks:  # type: ignore[type-var]
                    async for chunk in chunks:
                        await send.send(chunk)
            except anyio.BrokenResourceError:
                pass
            except anyio.get_cancelled_exc_class():
                raise
            except BaseException as exc:  # never let it reach (and stop) the shared portal
                failure.append(exc)
            finally:
                pumped.set()

        future = portal.start_task_soon(pump)
        try:
            while True:
                try:
                    yield portal.call(recv.receive)
                except anyio.EndOfStream:
                    break
        finally:
            portal.call(recv.aclose)
            if not pumped.is_set():  # left early: cancel the pump, whose aclosing kills the command
                future.cancel()
                pumped.wait(STOP_WAIT)
        if failure:
            raise failure[0]
