"""One command inside a sandbox's namespaces: nsenter from the host, in a cgroup of its own.

The host's ``sh`` joins the sandbox's limit cgroups and a fresh command cgroup, then execs
``nsenter``, which enters the sandbox's user, mount, uts, ipc, net, pid and cgroup namespaces,
changes root to the sandbox's root and forks the command there. Everything the command starts
stays in its cgroup, so a timeout kills the whole tree. The environment goes to the command alone
(never into argv, a message or the registry).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from subprocess import DEVNULL, PIPE

import anyio
import anyio.abc
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from sandboxkit.spi import OutputCallback, StreamName
from sandboxkit_bwrap._cgroups import SandboxCgroups
from sandboxkit_bwrap._supervisor import JOIN_CGROUPS

#: After the command's main process exits, how long background children may hold its output open
#: before output stops being read (Docker's exec waits the same 2 s).
LINGER = 2.0
CHUNK = 64 << 10


@dataclass(frozen=True)
class Target:
    """Where commands of one sandbox run."""

    init_pid: int
    cgroups: SandboxCgroups
    nsenter: str


@dataclass(frozen=True)
class Finished:
    exit_code: int
    timed_out: bool
    oom_killed: bool


def nsenter_argv(target: Target, argv: Sequence[str], cwd: str, ids: tuple[int, int] | None = None) -> list[str]:
    """nsenter into every namespace, root and cwd of the sandbox's PID 1, then ``cd`` inside.

    The directory is changed by the sandbox's own ``sh``: nsenter's ``--wd=PATH`` would open PATH
    on the host before entering, leaving the command in a host directory outside its root.
    The sandbox's cgroup namespace was made by the host (see the supervisor), so it belongs to the
    host's user namespace: root inside can neither mount a cgroupfs in it nor enter another one,
    and a command cannot leave its cgroup.
    """
    ns = ["-U", "-m", "-u", "-i", "-n", "-p", "-C", "-r", "-w"]
    if ids is not None:  # uid and gid inside the sandbox (no supplementary groups)
        ns += ["-S", str(ids[0]), "-G", str(ids[1])]
    cd = [] if cwd == "/" else ["/bin/sh", "-c", 'cd -- "$0" || exit 1; exec "$@"', cwd]  # -w: init's "/"
    return [target.nsenter, "-t", str(target.init_pid), *ns, "--", *cd, *argv]


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
) -> Finished:
    """Run ``argv`` to its end (or its timeout), passing output chunks to ``on_output`` in order."""
    cgroup = target.cgroups.new_command()  # one mkdir: not worth a thread
    ooms = target.cgroups.oom_kills()
    command = [
        "/bin/sh",
        "-c",
        JOIN_CGROUPS,
        "sh",
        *map(str, cgroup.procs),
        "--",
        *nsenter_argv(target, argv, cwd, ids),
    ]
    timed_out = completed = False
    proc: anyio.abc.Process | None = None
    try:
        proc = await anyio.open_process(
            command, stdin=PIPE if stdin is not None else DEVNULL, stdout=PIPE, stderr=PIPE, env=dict(env), cwd="/"
        )
        assert proc.stdout is not None and proc.stderr is not None
        send, receive = anyio.create_memory_object_stream[tuple[StreamName, bytes]](math.inf)
        delivered = anyio.Event()
        async with anyio.create_task_group() as tg:
            tg.start_soon(_pump, proc.stdout, "stdout", send.clone())
            tg.start_soon(_pump, proc.stderr, "stderr", send.clone())
            send.close()
            if stdin is not None:
                assert proc.stdin is not None
                tg.start_soon(_feed, proc.stdin, stdin)
            tg.start_soon(_deliver, receive, on_output, delivered)
            with anyio.move_on_after(timeout) as scope:
                await proc.wait()
            if scope.cancelled_caught:
                timed_out = True
                await anyio.to_thread.run_sync(cgroup.kill)
                await proc.wait()
            with anyio.move_on_after(LINGER):
                await delivered.wait()
            tg.cancel_scope.cancel()
        code = proc.returncode if proc.returncode is not None else -9
        completed = True
    finally:
        # Cancelled (or failed) before the end: kill the whole tree first (nsenter is in the cgroup
        # too), so closing the process below never waits on a command that still runs.
        with anyio.CancelScope(shield=True):
            if timed_out or not completed:
                await anyio.to_thread.run_sync(cgroup.kill)
            if proc is not None:
                await proc.aclose()
            if not cgroup.pids():  # background children keep it until the sandbox ends
                cgroup.remove()
    return Finished(
        exit_code=128 - code if code < 0 else code,
        timed_out=timed_out,
        oom_killed=target.cgroups.oom_kills() > ooms,
    )


async def _pump(
    stream: anyio.abc.ByteReceiveStream, name: StreamName, out: MemoryObjectSendStream[tuple[StreamName, bytes]]
) -> None:
    async with out:
        try:
            while True:
                await out.send((name, await stream.receive(CHUNK)))
        except (anyio.EndOfStream, anyio.ClosedResourceError, anyio.BrokenResourceError):
            pass


async def _feed(stream: anyio.abc.ByteSendStream, data: bytes) -> None:
    try:
        for start in range(0, len(data), CHUNK):
            await stream.send(data[start : start + CHUNK])
    except (anyio.BrokenResourceError, anyio.ClosedResourceError, BrokenPipeError):
        pass
    finally:
        await stream.aclose()


async def _deliver(
    receive: MemoryObjectReceiveStream[tuple[StreamName, bytes]], on_output: OutputCallback, done: anyio.Event
) -> None:
    async with receive:
        async for name, data in receive:
            await on_output(name, data)
    done.set()
