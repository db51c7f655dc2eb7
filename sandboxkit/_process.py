"""Process: a command spawned in a sandbox that outlives the call and the client (capability PROCESSES)."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Iterator
from typing import TYPE_CHECKING

import anyio

from sandboxkit import _portal
from sandboxkit._errors import ErrorCode, SandboxError
from sandboxkit._types import ExecResult, OutputChunk, ProcessInfo

if TYPE_CHECKING:
    from sandboxkit._async_sandbox import AsyncSandbox
    from sandboxkit._stream import AsyncExecStream


class AsyncProcess:
    """A spawned process; any client connected to its sandbox can reattach with ``sb.process(id)``."""

    def __init__(self, sandbox: AsyncSandbox, info: ProcessInfo) -> None:
        self._sandbox = sandbox
        self.id = info.id
        self.command = list(info.command)
        self.pty = info.pty
        self._last = info

    def __repr__(self) -> str:
        return f"<Process id={self.id!r} command={self.command!r} pty={self.pty}>"

    async def info(self) -> ProcessInfo:
        """Its current state: running, exit code."""
        self._last = await self._sandbox._process_call(lambda h: h.process_info(self.id))
        return self._last

    async def poll(self) -> int | None:
        """Its exit code, or None while it runs."""
        return (await self.info()).exit_code

    async def wait(self, timeout: float | None = None, *, max_output: int | None = None) -> ExecResult:
        """Wait for it to end; its retained output as an ExecResult. COMMAND_TIMEOUT (with the output so
        far on ``.result``) when ``timeout`` passes first; the process keeps running."""
        from sandboxkit._collect import DEFAULT_MAX_OUTPUT, Collector, with_result

        collector = Collector(DEFAULT_MAX_OUTPUT if max_output is None else max_output, None)
        done: ProcessInfo | None = None
        with anyio.move_on_after(timeout):
            done = await self._sandbox._process_call(lambda h: h.process_stream(self.id, collector, follow=True))
        if done is None:
            raise with_result(
                SandboxError(
                    ErrorCode.COMMAND_TIMEOUT,
                    f"process {self.id} still runs after {timeout:g}s; it keeps running (kill() ends it)",
                    provider=self._sandbox.provider,
                    sandbox_id=self._sandbox.id,
                ),
                collector.result(-1),
            )
        self._last = done
        return collector.result(done.exit_code if done.exit_code is not None else -1)

    def stream(self, *, follow: bool = True) -> AsyncExecStream:
        """Its output: first what was retained, then (with ``follow``) live output until it exits."""
        from sandboxkit._collect import DEFAULT_MAX_OUTPUT, Collector
        from sandboxkit._stream import AsyncExecStream

        def start(forward: Callable[[OutputChunk], Awaitable[None]]) -> Awaitable[ExecResult]:
            async def run() -> ExecResult:
                collector = Collector(DEFAULT_MAX_OUTPUT, forward)
                done = await self._sandbox._process_call(lambda h: h.process_stream(self.id, collector, follow=follow))
                self._last = done
                return collector.result(done.exit_code if done.exit_code is not None else -1)

            return run()

        return AsyncExecStream(start)

    async def kill(self, signal: str = "TERM") -> None:
        """Signal its whole tree; ``"KILL"`` leaves no survivor (``setsid`` and double forks included)."""
        await self._sandbox._process_call(lambda h: h.process_signal(self.id, signal))

    async def write_stdin(self, data: str | bytes) -> None:
        """Feed bytes (str as UTF-8) to its stdin; on a PTY they go through the line discipline."""
        from sandboxkit._collect import as_bytes

        await self._sandbox._process_call(lambda h: h.process_write_stdin(self.id, as_bytes(data, "data")))

    async def close_stdin(self) -> None:
        """Close its stdin (EOF); on a PTY, send end-of-file (^D)."""
        await self._sandbox._process_call(lambda h: h.process_close_stdin(self.id))

    async def resize(self, rows: int, cols: int) -> None:
        """Resize its terminal (PTY only): what ``stty size`` reports."""
        if not self.pty:
            raise SandboxError(
                ErrorCode.INVALID_ARGUMENT, f"process {self.id} has no terminal; spawn it with pty=True to resize"
            )
        if not all(isinstance(v, int) and 1 <= v <= 10000 for v in (rows, cols)):
            raise SandboxError(
                ErrorCode.INVALID_ARGUMENT, f"rows and cols must be ints from 1 to 10000, got {rows}, {cols}"
            )
        await self._sandbox._process_call(lambda h: h.process_resize(self.id, rows, cols))


class Process:
    """Blocking twin of :class:`AsyncProcess`."""

    def __init__(self, inner: AsyncProcess) -> None:
        self.aio = inner

    id = property(lambda self: self.aio.id, doc="Stable id, valid from any client of the sandbox.")
    command = property(lambda self: self.aio.command, doc="The command it runs.")
    pty = property(lambda self: self.aio.pty, doc="True when it runs on a terminal.")

    def __repr__(self) -> str:
        return repr(self.aio)

    def info(self) -> ProcessInfo:
        """Its current state."""
        return _portal.call(self.aio.info)

    def poll(self) -> int | None:
        """Its exit code, or None while it runs."""
        return _portal.call(self.aio.poll)

    def wait(self, timeout: float | None = None, *, max_output: int | None = None) -> ExecResult:
        """Wait for it to end; COMMAND_TIMEOUT when ``timeout`` passes first (it keeps running)."""
        return _portal.call(functools.partial(self.aio.wait, timeout, max_output=max_output))

    def stream(self, *, follow: bool = True) -> Iterator[OutputChunk]:
        """Its retained output, then live output until it exits."""
        from sandboxkit._stream import ExecStream

        return iter(ExecStream(self.aio.stream(follow=follow)))

    def kill(self, signal: str = "TERM") -> None:
        """Signal its whole tree."""
        _portal.call(self.aio.kill, signal)

    def write_stdin(self, data: str | bytes) -> None:
        """Feed bytes to its stdin."""
        _portal.call(self.aio.write_stdin, data)

    def close_stdin(self) -> None:
        """Close its stdin."""
        _portal.call(self.aio.close_stdin)

    def resize(self, rows: int, cols: int) -> None:
        """Resize its terminal (PTY only)."""
        _portal.call(self.aio.resize, rows, cols)


__all__ = ["AsyncProcess", "Process"]
