"""Spawned processes for any provider that runs commands: the client side of the in-sandbox supervisor.

A provider hands :class:`InSandboxProcesses` its exec call; every operation is one short command
running :mod:`sandboxkit._procd` (which needs ``python3`` in the image). All state lives in the
sandbox, so any client connected to it, in any process, sees the same processes.
"""

from __future__ import annotations

import builtins
import datetime as dt
import functools
import hashlib
import json
import uuid
from collections.abc import Awaitable, Callable
from importlib import resources
from typing import Any

import anyio

from sandboxkit._errors import ErrorCode, SandboxError
from sandboxkit._provider import OutputCallback
from sandboxkit._types import ExecExit, ExecRequest, ProcessInfo, SpawnRequest, StreamName

#: A provider's exec: run a request, pass output to the callback, return how it ended.
Run = Callable[[ExecRequest, OutputCallback], Awaitable[ExecExit]]
_FRAME = 5
_STREAMS: dict[int, StreamName] = {1: "stdout", 2: "stderr"}
_SIGNALS = frozenset({"TERM", "KILL", "INT", "HUP", "QUIT", "USR1", "USR2", "STOP", "CONT", "WINCH"})
#: How the supervisor words a command that could not start (as ``docker exec`` does).
_START_FAILURES = ("exec failed:", "cannot start:")
#: How long a process may take to start (three Python starts; minutes on an overloaded machine).
START_TIMEOUT = 120.0
#: How long a short supervisor operation may take.
OP_TIMEOUT = 120.0


def _source() -> str:
    return resources.files("sandboxkit").joinpath("_procd.py").read_text()


#: Where the supervisor's code is kept in the sandbox (compiled once, by the first import).
_CODE_DIR = (
    "import os,sys\nb='/dev/shm'\n"
    "b=os.path.join(b if os.path.isdir(b) and os.access(b,os.W_OK) else '/tmp','.sandboxkit-procs')\n"
    "c=os.path.join(b,'.code')\n"
)
#: Runs an operation of the installed supervisor code: ``-c LOADER HASH OP auto ARGS...``; 99 when missing.
_LOADER = (
    _CODE_DIR + "sys.path.insert(0,c)\ntry:\n m=__import__('sbk_procd_'+sys.argv[1])\n"
    "except ImportError:\n sys.exit(99)\ndel sys.argv[1]\nm.main()\n"
)
#: Installs the code from stdin: ``-c INSTALLER HASH``.
_INSTALLER = (
    _CODE_DIR + "os.makedirs(b,exist_ok=True)\ntry:\n os.chmod(b,0o1777)\nexcept OSError:\n pass\n"
    "os.makedirs(c,exist_ok=True)\np=os.path.join(c,'sbk_procd_'+sys.argv[1]+'.py')\n"
    "t=p+'.'+str(os.getpid())\nopen(t,'wb').write(sys.stdin.buffer.read())\nos.rename(t,p)\n"
)
_MISSING = 99


class InSandboxProcesses:
    """spawn/processes/stream/signal/stdin/resize through :mod:`sandboxkit._procd`, for one sandbox."""

    def __init__(
        self, run: Run, *, launch: Run | None = None, detached: bool = False, provider: str, sandbox_id: str
    ) -> None:
        self._run = run
        #: how the supervisor starts; a provider whose exec path kills leftovers gives a plainer one
        self._launch = launch or run
        #: ``launch`` returns at once, without the command's output or exit code (``docker exec -d``):
        #: the start is confirmed with one ``await`` operation on ``run``
        self._detached = detached
        self._installed = False
        self._provider = provider
        self._sandbox_id = sandbox_id
        self._code = _source()
        self._hash = hashlib.sha256(self._code.encode()).hexdigest()[:16]

    def _error(self, code: ErrorCode, message: str) -> SandboxError:
        return SandboxError(code, message, provider=self._provider, sandbox_id=self._sandbox_id)

    async def _op(
        self,
        op: str,
        *args: str,
        stdin: bytes | None = None,
        on_output: OutputCallback | None = None,
        run: Run | None = None,
        user: str | None = None,
        cwd: str | None = None,
        env: dict[str, str] | None = None,
        timeout: float | None = OP_TIMEOUT,
        start: bool = False,
    ) -> bytes:
        out, err = bytearray(), bytearray()

        async def collect(stream: StreamName, data: bytes) -> None:
            (out if stream == "stdout" else err).extend(data)

        request = ExecRequest(
            argv=["python3", "-I", "-S", "-c", _LOADER, self._hash, op, "auto", *args],
            stdin=stdin,
            user=user,
            cwd=cwd,
            env=env or {},
            timeout=timeout,
        )
        outcome = await (run or self._run)(request, on_output or collect)
        if outcome.exit_code == _MISSING:  # a sandbox's first operation: install the code, then again
            await self._install()
            out.clear()
            err.clear()
            outcome = await (run or self._run)(request, on_output or collect)
        self._installed = self._installed or outcome.exit_code != _MISSING
        if outcome.exit_code == 0:
            return bytes(out)
        message = err.decode(errors="replace").strip()
        if outcome.timed_out:
            raise self._error(ErrorCode.PROVIDER_UNAVAILABLE, f"the process supervisor did not answer: {op}")
        if outcome.exit_code in (3, 4, 5):
            raise self._error(ErrorCode.INVALID_ARGUMENT, message)
        start = start or op == "start"
        if start and message.startswith(_START_FAILURES):
            raise self._error(ErrorCode.INVALID_ARGUMENT, f"the process could not start: {message}")
        if outcome.exit_code in (126, 127) and not await self._has_python(user):
            raise self._error(
                ErrorCode.CAPABILITY_NOT_SUPPORTED,
                "spawned processes need python3 (3.9 or newer) in the sandbox's image; use an image that has it",
            )
        what = message or f"exit code {outcome.exit_code}"
        if start:
            raise self._error(ErrorCode.INVALID_ARGUMENT, f"the process could not start (check user=): {what}")
        raise self._error(ErrorCode.PROVIDER_UNAVAILABLE, f"process supervisor {op} failed: {what}")

    async def _install(self) -> None:
        async def ignore(stream: StreamName, data: bytes) -> None:
            pass

        install = ExecRequest(
            argv=["python3", "-I", "-S", "-c", _INSTALLER, self._hash], stdin=self._code.encode(), timeout=OP_TIMEOUT
        )
        outcome = await self._run(install, ignore)
        self._installed = outcome.exit_code == 0
        if outcome.exit_code != 0 and not await self._has_python(None):
            raise self._error(
                ErrorCode.CAPABILITY_NOT_SUPPORTED,
                "spawned processes need python3 (3.9 or newer) in the sandbox's image; use an image that has it",
            )

    async def _has_python(self, user: str | None) -> bool:
        async def ignore(stream: StreamName, data: bytes) -> None:
            pass

        probe = ExecRequest(argv=["sh", "-c", "command -v python3"], timeout=OP_TIMEOUT)
        return (await self._run(probe, ignore)).exit_code == 0

    async def spawn(self, request: SpawnRequest) -> ProcessInfo:
        process_id = f"p-{uuid.uuid4().hex[:12]}"
        rows, cols = request.size or (24, 80)
        spec = {
            "id": process_id,
            "argv": list(request.argv),
            "cwd": request.cwd,
            "pty": request.pty,
            "rows": rows,
            "cols": cols,
        }
        launch = functools.partial(
            self._op,
            "start",
            json.dumps(spec),
            "1" if self._detached else "0",
            run=self._launch,
            user=request.user,
            env=dict(request.env),
            timeout=START_TIMEOUT,
        )
        if not self._detached:
            return _info(json.loads(await launch())[0])
        if not self._installed:  # its exit code never comes back: it cannot ask for the code to be installed
            await self._install()
        # the command that waits for the start report starts beside the launch, not after it
        started: list[bytes] = []
        failures: list[Exception] = []  # raised after the group, unwrapped; the launch's first

        async def confirm() -> None:
            try:
                started.append(await self._op("await", process_id, f"{START_TIMEOUT:g}", start=True, timeout=None))
            except Exception as exc:
                failures.append(exc)

        async with anyio.create_task_group() as tg:
            tg.start_soon(confirm)
            try:
                await launch()
            except Exception as exc:
                failures.insert(0, exc)
                tg.cancel_scope.cancel()
        if failures:
            raise failures[0]
        return _info(json.loads(started[0])[0])

    async def processes(self) -> builtins.list[ProcessInfo]:
        return [_info(row) for row in json.loads(await self._op("info"))]

    async def info(self, process_id: str) -> ProcessInfo:
        rows = json.loads(await self._op("info", _checked(process_id)))
        return _info(rows[0])

    async def stream(self, process_id: str, on_output: OutputCallback, *, follow: bool) -> ProcessInfo:
        buffer = bytearray()
        final: list[dict[str, Any]] = []

        async def frames(stream: StreamName, data: bytes) -> None:
            if stream != "stdout":
                return
            buffer.extend(data)
            while len(buffer) >= _FRAME:
                kind, size = buffer[0], int.from_bytes(buffer[1:_FRAME], "big")
                if len(buffer) < _FRAME + size:
                    return
                body = bytes(buffer[_FRAME : _FRAME + size])
                del buffer[: _FRAME + size]
                if kind in _STREAMS:
                    await on_output(_STREAMS[kind], body)
                else:
                    final.append(json.loads(body))

        await self._op("read", _checked(process_id), "1" if follow else "0", on_output=frames, timeout=None)
        if not final:
            raise self._error(ErrorCode.PROVIDER_UNAVAILABLE, f"the output of process {process_id} ended early")
        return _info(final[0])

    async def signal(self, process_id: str, signal: str) -> None:
        name = str(signal).upper().removeprefix("SIG")
        if name not in _SIGNALS:
            raise self._error(
                ErrorCode.INVALID_ARGUMENT, f"signal must be one of {', '.join(sorted(_SIGNALS))}, got {signal!r}"
            )
        await self._op("signal", _checked(process_id), name)

    async def write_stdin(self, process_id: str, data: bytes) -> None:
        await self._op("write", _checked(process_id), stdin=data)

    async def close_stdin(self, process_id: str) -> None:
        await self._op("ctl", _checked(process_id), "close")

    async def resize(self, process_id: str, rows: int, cols: int) -> None:
        await self._op("ctl", _checked(process_id), "resize", str(int(rows)), str(int(cols)))


def _checked(process_id: str) -> str:
    if not isinstance(process_id, str) or not process_id or "/" in process_id or process_id.startswith("."):
        raise SandboxError(ErrorCode.INVALID_ARGUMENT, f"{process_id!r} is not a process id (see sb.processes())")
    return process_id


def _info(row: dict[str, Any]) -> ProcessInfo:
    return ProcessInfo(
        id=row["id"],
        command=list(row["command"]),
        running=bool(row["running"]),
        exit_code=row["exit_code"],
        started_at=dt.datetime.fromtimestamp(row["started_at"], dt.UTC),
        pty=bool(row["pty"]),
    )


class SupervisedProcesses:
    """Mixin for a SandboxHandle: the PROCESSES/PTY hooks through :class:`InSandboxProcesses` (``self.supervisor``)."""

    supervisor: InSandboxProcesses

    async def spawn(self, request: SpawnRequest) -> ProcessInfo:
        return await self.supervisor.spawn(request)

    async def processes(self) -> builtins.list[ProcessInfo]:
        return await self.supervisor.processes()

    async def process_info(self, process_id: str) -> ProcessInfo:
        return await self.supervisor.info(process_id)

    async def process_stream(self, process_id: str, on_output: OutputCallback, *, follow: bool) -> ProcessInfo:
        return await self.supervisor.stream(process_id, on_output, follow=follow)

    async def process_signal(self, process_id: str, signal: str) -> None:
        await self.supervisor.signal(process_id, signal)

    async def process_write_stdin(self, process_id: str, data: bytes) -> None:
        await self.supervisor.write_stdin(process_id, data)

    async def process_close_stdin(self, process_id: str) -> None:
        await self.supervisor.close_stdin(process_id)

    async def process_resize(self, process_id: str, rows: int, cols: int) -> None:
        await self.supervisor.resize(process_id, rows, cols)
