"""Exec engine: one docker exec, its output read off the hijacked socket on the event loop.

Per-call timeouts kill the whole process tree: every exec carries a unique marker in its
environment, inherited by all its descendants (``setsid`` ones too), and a second exec kills
every process whose environment holds it. Docker's exec has no kill of its own.
"""

from __future__ import annotations

import socket
import uuid
from collections.abc import Callable, Mapping
from typing import Any

import anyio

from sandboxkit.spi import ErrorCode, ExecExit, ExecRequest, OutputCallback, SandboxError, StreamName
from sandboxkit_docker import _dockerpy, _threads
from sandboxkit_docker._errors import translate
from sandboxkit_docker._frames import STDERR, STDOUT, FrameSplitter

MARKER = "SANDBOXKIT_EXEC_ID"
# Shell builtins only, so it works when a fork bomb holds every pid slot (``read`` drops the NULs
# of /proc/*/environ and we match the marker as a substring). Passes of SIGSTOP freeze the tree so
# nothing forks any more, then SIGKILL; repeat until a pass finds nothing (at most 20 passes). With
# more than 512 processes in the sandbox (a fork bomb would starve the passes of CPU) it first
# stops every other process of the sandbox (``kill -STOP -1``) and continues them at the end.
_KILL = (
    "set -- /proc/[0-9]*; h=; [ $# -gt 512 ] && kill -STOP -1 2>/dev/null && h=1; "
    "t='" + MARKER + '={token}\'; found=1; n=0; while [ -n "$found" ] && [ $n -lt 20 ]; do found=; n=$((n+1)); '
    'for sig in STOP KILL; do for p in /proc/[0-9]*; do [ "${{p#/proc/}}" = $$ ] && continue; '
    'while IFS= read -r l || [ -n "$l" ]; do case $l in *"$t"*) '
    "kill -$sig ${{p#/proc/}} 2>/dev/null && found=1; break;; esac; l=; done 2>/dev/null < $p/environ; "
    'done; done; done; [ -n "$h" ] && kill -CONT -1; true'
)
_STREAMS: dict[int, StreamName] = {STDOUT: "stdout", STDERR: "stderr"}
#: After a kill, how long to keep reading what the dying processes still write.
DRAIN_SECONDS = 5.0
_RECV = 1 << 20


class ExecEngine:
    """Runs commands in one container through a docker-py APIClient."""

    def __init__(self, api: Any, container_id: str, base_env: Callable[[], Mapping[str, str]]) -> None:
        self.api = api
        self.container_id = container_id
        self.base_env = base_env

    async def _call(self, func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        def run() -> Any:
            with translate(sandbox_id=self.container_id):
                return func(*args, **kwargs)

        return await _threads.run_sync(run)

    async def run(self, request: ExecRequest, on_output: OutputCallback) -> ExecExit:
        token = uuid.uuid4().hex
        env = {**self.base_env(), **request.env, MARKER: token}
        created = await self._call(
            self.api.exec_create,
            self.container_id,
            list(request.argv),
            stdin=request.stdin is not None,
            environment=env,
            workdir=request.cwd,
            user=request.user or "",
        )
        exec_id = created["Id"]
        sock = await self._call(self.api.exec_start, exec_id, socket=True)
        raw: socket.socket = _dockerpy.raw_socket(sock)
        finished = False
        timed_out = False
        try:
            raw.setblocking(False)
            ahead = _dockerpy.read_ahead(sock)
            async with anyio.create_task_group() as tg:
                if request.stdin is not None:
                    tg.start_soon(_feed, raw, request.stdin)
                with anyio.move_on_after(request.timeout) as deadline:
                    await _pump(raw, on_output, ahead)
                    finished = True
                if deadline.cancelled_caught:
                    timed_out = True
                    await self.kill(token, request.user)
                    with anyio.move_on_after(DRAIN_SECONDS):
                        await _pump(raw, on_output)
                    finished = True
                tg.cancel_scope.cancel()
        finally:
            if not finished:  # cancelled, or the consumer raised: the command must not outlive us
                with anyio.CancelScope(shield=True):
                    await self.kill(token, request.user)
            _close(sock, raw)
        code = await self.exit_code(exec_id)
        return ExecExit(
            exit_code=137 if timed_out and code is None else (code if code is not None else -1), timed_out=timed_out
        )

    async def exit_code(self, exec_id: str) -> int | None:
        """The exec's exit code; waits briefly for the engine to record it."""
        for _ in range(50):
            info = await self._call(self.api.exec_inspect, exec_id)
            if not info.get("Running") and info.get("ExitCode") is not None:
                return int(info["ExitCode"])
            await anyio.sleep(0.02)
        return None

    async def kill(self, token: str, user: str | None) -> None:
        """Kill every process that carries ``token`` in its environment, as the same user."""
        script = _KILL.format(token=token)
        for _ in range(10):
            try:
                created = await self._call(
                    self.api.exec_create, self.container_id, ["sh", "-c", script], user=user or ""
                )
                await self._call(self.api.exec_start, created["Id"])
                if (await self._call(self.api.exec_inspect, created["Id"])).get("ExitCode") == 0:
                    return
            except SandboxError as exc:
                if exc.code == ErrorCode.SANDBOX_NOT_FOUND:  # gone: nothing left to kill
                    return
            except Exception:  # the engine failed: try again, then give up
                pass
            await anyio.sleep(0.1)  # at the pids limit the killer itself may fail to start (exit 126)


async def _pump(raw: socket.socket, on_output: OutputCallback, ahead: bytes = b"") -> None:
    """Read multiplexed frames until EOF and hand each payload on in order (``ahead`` comes first)."""
    frames = FrameSplitter()
    payloads: list[tuple[StreamName, bytes]] = []

    def keep(kind: int, payload: memoryview) -> None:
        stream = _STREAMS.get(kind)
        if stream is not None and payload:
            payloads.append((stream, bytes(payload)))

    pending = ahead
    while True:
        if pending:
            data, pending = pending, b""
        else:
            data = await _recv(raw)
        if not data:
            return
        frames.feed(data, keep)
        for stream, payload in payloads:
            await on_output(stream, payload)
        payloads.clear()


async def _recv(raw: socket.socket) -> bytes:
    """The next bytes from the socket; b"" at EOF or when the connection broke."""
    while True:
        try:
            return raw.recv(_RECV)
        except (BlockingIOError, InterruptedError):
            await anyio.wait_readable(raw)
        except (ConnectionResetError, OSError):
            return b""


async def _feed(raw: socket.socket, data: bytes) -> None:
    """Write stdin without blocking the loop, then half-close so the command sees EOF."""
    view = memoryview(data)
    try:
        while view:
            try:
                sent = raw.send(view[:_RECV])
            except (BlockingIOError, InterruptedError):
                await anyio.wait_writable(raw)
                continue
            view = view[sent:]
        raw.shutdown(socket.SHUT_WR)
    except OSError:  # the command exited without reading all of its stdin
        return


def _close(sock: Any, raw: socket.socket) -> None:
    for closer in (getattr(sock, "close", None), raw.close):
        try:
            if closer is not None:
                closer()
        except OSError:
            pass
