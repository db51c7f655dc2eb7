"""Processes the task command router serves: commands run in the sandbox's Docker container.

A Modal exec's stdin arrives in pieces after the command starts, while sandboxkit's ``stdin=``
takes all bytes up front. So a command waits (briefly) for its first stdin event: stdin written
and closed in one go -> the command runs with exactly those bytes (the common case); anything
else (a partial write, a read, a wait, or a short grace period) -> it runs with its stdin on a
FIFO inside the container, fed by one small exec per write and closed on EOF, as on Modal.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from sandboxkit import AsyncSandbox, CommandTimeoutError, ErrorCode, SandboxError

if TYPE_CHECKING:
    from sandboxkit_modal.emulator._state import EmuSandbox

#: How long a command waits for its first stdin event before it starts with an open stdin.
STDIN_GRACE = 0.3
#: Largest chunk one read response carries.
READ_CHUNK = 1 << 20
#: Seconds a stdin feeder exec may take before it is given up.
FEED_TIMEOUT = 60.0

# $1: fifo path; then the command. The holder keeps the FIFO's write end open until EOF is sent.
_FIFO_WRAPPER = (
    'f=$1; shift; mkfifo -m 600 "$f" || exit 125; '
    'sleep 2147483647 >"$f" 2>/dev/null & echo $! >"$f.pid"; '
    '"$@" <"$f"; rc=$?; kill "$(cat "$f.pid")" 2>/dev/null; rm -f "$f" "$f.pid"; exit $rc'
)
_FIFO_FEED = (
    'i=0; while [ ! -p "$1" ] && [ $i -lt 200 ]; do sleep 0.05; i=$((i+1)); done; '
    '[ -p "$1" ] || exit 0; exec cat 1<>"$1"'
)
_FIFO_CLOSE = (
    'i=0; while [ -p "$1" ] && [ ! -s "$1.pid" ] && [ $i -lt 100 ]; do sleep 0.05; i=$((i+1)); done; '
    '[ -s "$1.pid" ] && kill "$(cat "$1.pid")" 2>/dev/null; exit 0'
)


class Output:
    """An append-only stream that readers follow from any byte offset (TaskExecStdioRead semantics)."""

    def __init__(self) -> None:
        self.data = bytearray()
        self.closed = False
        self._changed = asyncio.Event()

    def write(self, chunk: bytes) -> None:
        if chunk:
            self.data += chunk
            self._wake()

    def close(self) -> None:
        self.closed = True
        self._wake()

    def _wake(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    async def read_from(self, offset: int) -> AsyncIterator[bytes]:
        """Chunks from ``offset`` on, live, until the stream is closed and drained."""
        while True:
            if offset < len(self.data):
                chunk = bytes(self.data[offset : offset + READ_CHUNK])
                offset += len(chunk)
                yield chunk
            elif self.closed:
                return
            else:
                await self._changed.wait()


class Process:
    """Common state of anything started by TaskExecStart: output, stdin bookkeeping, exit status."""

    def __init__(self, sandbox: EmuSandbox) -> None:
        self.sandbox = sandbox
        self.stdout = Output()
        self.stderr = Output()
        self.stdin_written = 0
        self.stdin_closed = False
        self.exit_code: int | None = None
        self.timed_out = False
        #: the sandbox went away under the process
        self.lost = False
        self.finished_at: float | None = None
        self.done = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def exit(self, code: int) -> None:
        if self.exit_code is None:
            self.exit_code = code
            self.finished_at = time.monotonic()
        self.stdout.close()
        self.stderr.close()
        self.done.set()

    def trigger(self) -> None:
        """A client is reading or waiting: make sure the process runs."""

    async def write_stdin(self, offset: int, data: bytes, eof: bool) -> None:
        """Deliver stdin bytes starting at ``offset`` (a retried prefix is skipped), then EOF if asked."""
        raise NotImplementedError

    def skip_written(self, offset: int, data: bytes) -> bytes:
        if offset < self.stdin_written:
            data = data[self.stdin_written - offset :]
        return data


class Command(Process):
    """A command run in the sandbox's container through ``AsyncSandbox.stream``."""

    def __init__(
        self,
        sandbox: EmuSandbox,
        box: AsyncSandbox,
        argv: Sequence[str],
        *,
        env: Mapping[str, str],
        workdir: str | None,
        timeout: float | None,
        fifo_path: str,
        on_exit: Callable[[Command], None] | None = None,
        defer: bool = True,
    ) -> None:
        super().__init__(sandbox)
        self.box = box
        self.argv = list(argv)
        self.env = dict(env)
        self.workdir = workdir
        self.timeout = timeout
        self.fifo_path = fifo_path
        self.on_exit = on_exit
        self.received = time.monotonic()
        self.started = False
        self.fifo = False
        self._feed_lock = asyncio.Lock()
        if defer:
            asyncio.get_running_loop().call_later(STDIN_GRACE, self.trigger)
        else:
            self._start(None, fifo=True)

    def trigger(self) -> None:
        if not self.started:
            self._start(None, fifo=True)

    def _start(self, stdin: bytes | None, *, fifo: bool) -> None:
        self.started, self.fifo = True, fifo
        self.spawn(self._run(stdin))

    async def _run(self, stdin: bytes | None) -> None:
        argv = ["sh", "-c", _FIFO_WRAPPER, "sh", self.fifo_path, *self.argv] if self.fifo else self.argv
        timeout = None
        if self.timeout is not None:  # counted from TaskExecStart, as the client counts it
            timeout = max(0.05, self.timeout - (time.monotonic() - self.received))
        self.sandbox.busy += 1
        code = 0
        try:
            stream = self.box.stream(argv, timeout=timeout, env=self.env, cwd=self.workdir, stdin=stdin, max_output=0)
            async for chunk in stream:
                (self.stdout if chunk.stream == "stdout" else self.stderr).write(chunk.data)
            code = stream.result.exit_code if stream.result is not None else 0
        except CommandTimeoutError:
            self.timed_out, code = True, 137
        except SandboxError as exc:
            code = self._failed(exc)
        finally:
            self.sandbox.busy -= 1
            self.sandbox.touch()
            self.exit(code)
            if self.on_exit is not None:
                self.on_exit(self)

    def _failed(self, exc: SandboxError) -> int:
        if exc.code == ErrorCode.RESOURCE_LIMIT_EXCEEDED:  # OOM-killed: a SIGKILL, as the kernel sends
            return 137
        if exc.code == ErrorCode.SANDBOX_NOT_FOUND:
            self.lost = True
            self.sandbox.lost(f"the sandbox's container is gone: {exc.message}")
            return 137
        self.stderr.write(f"modal emulator: {exc.message}\n".encode())
        return 126

    async def write_stdin(self, offset: int, data: bytes, eof: bool) -> None:
        self.sandbox.touch()
        async with self._feed_lock:
            data = self.skip_written(offset, data)
            if self.stdin_closed:
                if data:
                    raise SandboxError(ErrorCode.INVALID_ARGUMENT, "stdin of this process is already closed")
                return
            if not self.started:
                if eof:
                    self.stdin_written += len(data)
                    self.stdin_closed = True
                    self._start(data, fifo=False)
                    return
                self._start(None, fifo=True)
            if data and self.fifo and self.exit_code is None:
                await self._fifo_exec(_FIFO_FEED, data)
            self.stdin_written += len(data)
            if eof:
                self.stdin_closed = True
                if self.fifo and self.exit_code is None:
                    await self._fifo_exec(_FIFO_CLOSE, None)

    async def _fifo_exec(self, script: str, data: bytes | None) -> None:
        try:
            await self.box.execute(["sh", "-c", script, "sh", self.fifo_path], stdin=data, timeout=FEED_TIMEOUT)
        except SandboxError:
            pass  # the command ended meanwhile; Modal drops stdin sent to a finished process too


class PtyCommand(Process):
    """A command on a terminal (exec with ``pty=True``): sandboxkit's ``spawn(pty=True)`` in the container.

    Everything arrives on stdout, as from a terminal; stdin goes through its line discipline, and
    EOF is the terminal's end-of-file (^D).
    """

    def __init__(
        self,
        sandbox: EmuSandbox,
        box: AsyncSandbox,
        argv: Sequence[str],
        *,
        env: Mapping[str, str],
        workdir: str | None,
        timeout: float | None,
        size: tuple[int, int],
    ) -> None:
        super().__init__(sandbox)
        self.box = box
        self.process: Any = None
        self._ready = asyncio.Event()
        self.spawn(self._run(list(argv), dict(env), workdir, timeout, size))

    async def _run(
        self, argv: list[str], env: dict[str, str], workdir: str | None, timeout: float | None, size: tuple[int, int]
    ) -> None:
        self.sandbox.busy += 1
        code = 0
        try:
            self.process = await self.box.spawn(argv, cwd=workdir, env=env, pty=True, size=size)
            self._ready.set()
            code = await asyncio.wait_for(self._pump(), timeout)
        except TimeoutError:
            self.timed_out, code = True, 137
            await self._kill()
        except SandboxError as exc:
            if exc.code == ErrorCode.SANDBOX_NOT_FOUND:
                self.lost = True
                self.sandbox.lost(f"the sandbox's container is gone: {exc.message}")
            else:
                self.stdout.write(f"modal emulator: {exc.message}\r\n".encode())
            code = 137 if self.lost else 126
        finally:
            self._ready.set()
            self.sandbox.busy -= 1
            self.sandbox.touch()
            self.exit(code)

    async def _pump(self) -> int:
        stream = self.process.stream()
        async for chunk in stream:
            self.stdout.write(chunk.data)
        return stream.result.exit_code if stream.result is not None else 0

    async def _kill(self) -> None:
        try:
            await self.process.kill("KILL")
        except SandboxError:
            pass

    async def write_stdin(self, offset: int, data: bytes, eof: bool) -> None:
        self.sandbox.touch()
        await self._ready.wait()
        data = self.skip_written(offset, data)
        if self.stdin_closed:
            if data:
                raise SandboxError(ErrorCode.INVALID_ARGUMENT, "stdin of this process is already closed")
            return
        try:
            if data and self.process is not None:
                await self.process.write_stdin(data)
            self.stdin_written += len(data)
            if eof:
                self.stdin_closed = True
                if self.process is not None:
                    await self.process.close_stdin()
        except SandboxError:
            pass  # the command ended meanwhile; Modal drops stdin sent to a finished process too
