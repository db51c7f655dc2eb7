"""One command inside a sandbox: asked of the sandbox's agent, in a cgroup of its own.

The client makes the command's freezer cgroup and its pipes, connects to the agent's socket and
sends the request with the pipes' far ends; the agent forks the command, which joins the
sandbox's limit cgroups and that cgroup, enters the sandbox and execs (see ``_agent``). Output is
read from the pipes here; the agent answers with the wait status alone. Everything the command
starts stays in its cgroup, so a timeout kills the whole tree. The environment goes to the
command alone (never into argv, a message or the registry).
"""

from __future__ import annotations

import math
import os
import socket
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from sandboxkit.spi import OutputCallback, StreamName
from sandboxkit_bwrap import _agent
from sandboxkit_bwrap._cgroups import Kind, SandboxCgroups

#: After the command's main process exits, how long background children may hold its output open
#: before output stops being read (Docker's exec waits the same 2 s).
LINGER = 2.0
CHUNK = 64 << 10


@dataclass(frozen=True)
class Target:
    """Where commands of one sandbox run."""

    cgroups: SandboxCgroups
    #: the agent's socket
    agent: Path


@dataclass(frozen=True)
class Finished:
    exit_code: int
    timed_out: bool
    oom_killed: bool


async def run(
    target: Target,
    argv: Sequence[str],
    *,
    env: Mapping[str, str],
    cwd: str,
    stdin: bytes | None,
    timeout: float | None,
    on_output: OutputCallback,
    ids: tuple[int, int] | None = None,
    op: _agent.Op = "x",
    kind: Kind = "cmd",
) -> Finished:
    """Run ``argv`` to its end (or its timeout), passing output chunks to ``on_output`` in order.

    ``kind="proc"``: the start of a spawned process, whose supervisor outlives this call in the
    cgroup (still the sandbox's, killed at its end); only a timeout or a cancelled call kills it.
    OSError when the agent cannot be reached or cannot start the command (the sandbox ended).
    """
    cgroup = target.cgroups.new_command(kind)  # one mkdir: not worth a thread
    ooms = target.cgroups.oom_kills()
    ours: list[int] = []  # the client's ends of the pipes
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    timed_out = completed = False
    try:
        theirs: list[int] = []
        try:
            request = _agent.request(op, argv, env=env, cwd=cwd, ids=ids or (0, 0), cgroups=cgroup.procs)
            if stdin is None:
                theirs.append(os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC))
            else:
                r, w = os.pipe2(os.O_CLOEXEC)
                theirs.append(r)
                ours.append(w)
            for _ in ("stdout", "stderr"):
                r, w = os.pipe2(os.O_CLOEXEC)
                ours.append(r)
                theirs.append(w)
            sock.connect(str(target.agent))  # a local listener: returns at once, or fails
            socket.send_fds(sock, [request[:4]], theirs)
            sock.sendall(request[4:])
        finally:
            for fd in theirs:
                os.close(fd)
        sock.setblocking(False)
        for fd in ours:
            os.set_blocking(fd, False)
        *stdin_fd, out_fd, err_fd = ours
        send, receive = anyio.create_memory_object_stream[tuple[StreamName, bytes]](math.inf)
        delivered = anyio.Event()
        async with anyio.create_task_group() as tg:
            tg.start_soon(_pump, out_fd, "stdout", send.clone())
            tg.start_soon(_pump, err_fd, "stderr", send.clone())
            send.close()
            if stdin is not None:
                tg.start_soon(_feed, stdin_fd[0], stdin, ours)
            tg.start_soon(_deliver, receive, on_output, delivered)
            status: int | None = None
            with anyio.move_on_after(timeout) as scope:
                status = await _status(sock)
            if scope.cancelled_caught:
                timed_out = True
                await anyio.to_thread.run_sync(cgroup.kill)
                status = await _status(sock)
            with anyio.move_on_after(LINGER):
                await delivered.wait()
            tg.cancel_scope.cancel()
        if status is None or status < 0:
            raise OSError("the sandbox's agent did not run the command (the sandbox ended)")
        code = os.waitstatus_to_exitcode(status)
        completed = True
    finally:
        # Cancelled (or failed) before the end: kill the whole tree first, so nothing the command
        # started runs on unseen.
        with anyio.CancelScope(shield=True):
            if timed_out or not completed:
                await anyio.to_thread.run_sync(cgroup.kill)
            sock.close()
            for fd in ours:
                if fd >= 0:
                    os.close(fd)
            if not cgroup.pids():  # background children keep it until the sandbox ends
                cgroup.remove()
    return Finished(
        exit_code=128 - code if code < 0 else code,
        timed_out=timed_out,
        oom_killed=target.cgroups.oom_kills() > ooms,
    )


async def _status(sock: socket.socket) -> int | None:
    """The agent's answer: the command's wait status; None if the agent went away first."""
    answer = b""
    while True:
        try:
            chunk = sock.recv(64)
        except BlockingIOError:
            await anyio.wait_readable(sock)
            continue
        if not chunk:
            break
        answer += chunk
    try:
        return int(answer)
    except ValueError:
        return None


async def _pump(fd: int, name: StreamName, out: MemoryObjectSendStream[tuple[StreamName, bytes]]) -> None:
    async with out:
        while True:
            try:
                data = os.read(fd, CHUNK)
            except BlockingIOError:
                await anyio.wait_readable(fd)
                continue
            if not data:
                return
            await out.send((name, data))


async def _feed(fd: int, data: bytes, ours: list[int]) -> None:
    """Write stdin, then close it (and mark it closed in ``ours``)."""
    view = memoryview(data)
    try:
        while view:
            try:
                view = view[os.write(fd, view[:CHUNK]) :]
            except BlockingIOError:
                await anyio.wait_writable(fd)
    except (BrokenPipeError, OSError):
        pass
    finally:
        os.close(fd)
        ours[ours.index(fd)] = -1


async def _deliver(
    receive: MemoryObjectReceiveStream[tuple[StreamName, bytes]], on_output: OutputCallback, done: anyio.Event
) -> None:
    async with receive:
        async for name, data in receive:
            await on_output(name, data)
    done.set()
