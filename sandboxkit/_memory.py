"""The ``memory`` provider: sandboxes that live in this process and run commands on the host.

NOT ISOLATION. A "sandbox" here is bookkeeping plus a private temporary directory (its default
working directory and ``$HOME``); its commands are ordinary host processes of your user, and its
file calls read and write the host's filesystem at the paths given. Use it to unit-test code that
uses sandboxkit, never to run code you do not trust. See :mod:`sandboxkit.testing`.
"""

from __future__ import annotations

import builtins
import contextlib
import datetime as dt
import errno
import os
import shlex
import shutil
import signal
import subprocess
import tempfile
import threading
import uuid
from collections.abc import Mapping
from typing import ClassVar

import anyio
import anyio.abc
from pydantic import BaseModel

from sandboxkit._capabilities import Capability
from sandboxkit._errors import ErrorCode, SandboxError, file_error
from sandboxkit._provider import OutputCallback, Provider, SandboxHandle
from sandboxkit._spec import SandboxSpec
from sandboxkit._types import ExecExit, ExecRequest, SandboxInfo, SandboxState, StreamName

NAME = "memory"
#: Every process of a command carries this variable; killing the tree means killing its holders.
MARKER = "SANDBOXKIT_MEMORY_EXEC"
#: After a kill, how long to keep reading what the dying processes still write.
DRAIN_SECONDS = 2.0


class Responder:
    """Canned results for commands, and a record of every command run (see ``sandboxkit.testing``)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._rules: builtins.list[tuple[str, bytes, bytes, int]] = []
        #: every command run on a memory sandbox, as text (``sh -c`` lines as given), in order
        self.calls: builtins.list[str] = []

    def add(self, command: str, *, stdout: str | bytes = b"", stderr: str | bytes = b"", exit_code: int = 0) -> None:
        """Answer every later command that starts with ``command`` with this output instead of running it."""
        out = stdout.encode() if isinstance(stdout, str) else stdout
        err = stderr.encode() if isinstance(stderr, str) else stderr
        with self._lock:
            self._rules.insert(0, (command, out, err, exit_code))  # the latest rule wins

    def clear(self) -> None:
        """Forget every rule and every recorded call."""
        with self._lock:
            self._rules.clear()
            self.calls.clear()

    def answer(self, text: str) -> tuple[bytes, bytes, int] | None:
        """Record ``text``; the canned (stdout, stderr, exit code) for it, or None to run it."""
        with self._lock:
            self.calls.append(text)
            for prefix, out, err, code in self._rules:
                if text.startswith(prefix):
                    return out, err, code
        return None


#: The one responder every memory sandbox of this process consults.
RESPONDER = Responder()


class _Sandbox:
    """One sandbox's state, shared by every handle to it (``from_id`` in this process)."""

    def __init__(self, spec: SandboxSpec) -> None:
        self.id = "mem-" + uuid.uuid4().hex[:16]
        self.spec = spec
        self.root = tempfile.mkdtemp(prefix=f"sandboxkit-{self.id}-")
        self.created_at = dt.datetime.now(dt.UTC)
        self.alive = True
        self.timer = threading.Timer(spec.timeout, self.end)
        self.timer.daemon = True

    @property
    def token(self) -> str:
        return f"{self.id}:"

    def end(self) -> None:
        """Kill every process of the sandbox and remove its directory. Idempotent."""
        self.alive = False
        self.timer.cancel()
        _kill_marked(self.token)
        shutil.rmtree(self.root, ignore_errors=True)


class MemoryProvider(Provider):
    """In-process sandboxes for unit tests: commands run on the host, NOT isolated (sandboxkit.testing)."""

    name: ClassVar[str] = NAME
    capabilities: ClassVar[frozenset[Capability]] = frozenset(
        {
            Capability.STDIN,
            Capability.STREAMING,
            Capability.RECONNECT,
            Capability.NAMED,
            Capability.LIST,
            Capability.TAGS,
        }
    )
    #: live sandboxes of this process, by id (class-wide: every provider instance sees them all)
    _live: ClassVar[dict[str, _Sandbox]] = {}

    async def create(self, spec: SandboxSpec, options: BaseModel) -> MemorySandbox:
        if spec.image not in (None, "host"):
            raise SandboxError(
                ErrorCode.SANDBOX_CREATION_FAILED,
                f"the memory provider has no images (got image={spec.image!r}); leave image out: "
                "commands run on this host",
                provider=NAME,
            )
        if spec.name is not None and any(
            s.spec.name == spec.name and s.spec.app == spec.app for s in self._live.values() if s.alive
        ):
            raise SandboxError(
                ErrorCode.ALREADY_EXISTS,
                f"a sandbox named {spec.name!r} already runs in app {spec.app!r}; pick another name",
                provider=NAME,
            )
        state = _Sandbox(spec)
        workdir = spec.workdir or state.root
        try:
            os.makedirs(workdir, exist_ok=True)
        except OSError as exc:
            state.end()
            raise SandboxError(
                ErrorCode.SANDBOX_CREATION_FAILED,
                f"workdir {workdir} cannot be created on this host ({exc.strerror}); the memory provider "
                "uses host paths: pick a writable one or leave workdir out",
                provider=NAME,
            ) from None
        self._live[state.id] = state
        state.timer.start()
        return MemorySandbox(state)

    async def from_id(self, sandbox_id: str) -> MemorySandbox:
        state = self._live.get(sandbox_id)
        if state is None or not state.alive:
            raise SandboxError(
                ErrorCode.SANDBOX_NOT_FOUND,
                f"no memory sandbox {sandbox_id!r} in this process (they live only as long as it)",
                provider=NAME,
            )
        return MemorySandbox(state)

    async def from_name(self, app: str, name: str) -> MemorySandbox:
        for state in self._live.values():
            if state.alive and state.spec.app == app and state.spec.name == name:
                return MemorySandbox(state)
        raise SandboxError(ErrorCode.SANDBOX_NOT_FOUND, f"no sandbox named {name!r} in app {app!r}", provider=NAME)

    async def list(
        self,
        *,
        app: str | None = None,
        tags: Mapping[str, str] | None = None,
        labels: Mapping[str, str] | None = None,
    ) -> builtins.list[SandboxInfo]:
        def matches(state: _Sandbox) -> bool:
            spec = state.spec
            return (
                state.alive
                and (app is None or spec.app == app)
                and all(spec.tags.get(k) == v for k, v in (tags or {}).items())
                and all(spec.labels.get(k) == v for k, v in (labels or {}).items())
            )

        return [
            SandboxInfo(
                id=s.id,
                name=s.spec.name,
                app=s.spec.app,
                tags=dict(s.spec.tags),
                state=SandboxState.RUNNING,
                created_at=s.created_at,
                provider=NAME,
            )
            for s in builtins.list(self._live.values())
            if matches(s)
        ]

    def version(self) -> str:
        return self.distribution_version("sandboxkit")


class MemorySandbox(SandboxHandle):
    """A handle to one in-process sandbox."""

    def __init__(self, state: _Sandbox) -> None:
        self.state = state
        self.id = state.id
        self.name = state.spec.name
        self.app = state.spec.app

    def _check(self) -> None:
        if not self.state.alive:
            raise SandboxError(
                ErrorCode.SANDBOX_NOT_FOUND,
                "this memory sandbox ended (closed, or past its lifetime)",
                provider=NAME,
                sandbox_id=self.id,
            )

    async def exec(self, request: ExecRequest, on_output: OutputCallback) -> ExecExit:
        self._check()
        argv = list(request.argv)
        text = argv[2] if argv[:2] == ["sh", "-c"] and len(argv) == 3 else shlex.join(argv)
        canned = RESPONDER.answer(text)
        if canned is not None:
            out, err, code = canned
            for stream, data in (("stdout", out), ("stderr", err)):
                if data:
                    await on_output(stream, data)  # type: ignore[arg-type]
            return ExecExit(exit_code=code)
        token = self.state.token + uuid.uuid4().hex
        env = {
            **os.environ,
            "HOME": self.state.root,
            **self.state.spec.env,
            **request.env,
            MARKER: token,
        }
        cwd = request.cwd or self.state.spec.workdir or self.state.root
        try:
            os.makedirs(cwd, exist_ok=True)
            process = await anyio.open_process(
                argv,
                stdin=subprocess.DEVNULL if request.stdin is None else subprocess.PIPE,
                cwd=cwd,
                env=env,
                start_new_session=True,
            )
        except OSError as exc:
            await on_output("stderr", f"{argv[0]}: {exc.strerror}\n".encode())
            return ExecExit(exit_code=127 if exc.errno == errno.ENOENT else 126)
        outcome = await _run(process, request, on_output, token)
        self._check()  # the lifetime ended it (or a close): SANDBOX_NOT_FOUND, not an exit code
        return outcome

    async def read_file(self, path: str) -> bytes:
        self._check()
        try:
            return await anyio.Path(path).read_bytes()
        except OSError as exc:
            raise _file_error(exc, path, self.id) from None

    async def write_file(self, path: str, data: bytes) -> None:
        self._check()
        try:
            await anyio.Path(path).parent.mkdir(parents=True, exist_ok=True)
            await anyio.Path(path).write_bytes(data)
        except OSError as exc:
            raise _file_error(exc, path, self.id) from None

    async def terminate(self) -> None:
        MemoryProvider._live.pop(self.id, None)
        await anyio.to_thread.run_sync(self.state.end)

    async def status(self) -> SandboxState:
        return SandboxState.RUNNING if self.state.alive else SandboxState.STOPPED


async def _run(
    process: anyio.abc.Process,
    request: ExecRequest,
    on_output: OutputCallback,
    token: str,
) -> ExecExit:
    """Pump a started process's output until it ends or its timeout; kill its tree on any way out."""
    finished = False

    async def pump(stream: anyio.abc.ByteReceiveStream | None, name: StreamName) -> None:
        if stream is None:
            return
        with contextlib.suppress(anyio.EndOfStream, anyio.ClosedResourceError, anyio.BrokenResourceError):
            async for chunk in stream:
                await on_output(name, chunk)

    async def feed() -> None:
        if process.stdin is None:
            return
        with contextlib.suppress(anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
            if request.stdin:
                await process.stdin.send(request.stdin)
        with contextlib.suppress(OSError, anyio.BrokenResourceError):
            await process.stdin.aclose()

    timed_out = False
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(feed)
            with anyio.move_on_after(request.timeout) as deadline:
                async with anyio.create_task_group() as pumps:
                    pumps.start_soon(pump, process.stdout, "stdout")
                    pumps.start_soon(pump, process.stderr, "stderr")
                code = await process.wait()
                finished = True
            if deadline.cancelled_caught:
                timed_out = True
                await anyio.to_thread.run_sync(_kill_marked, token)
                with anyio.move_on_after(DRAIN_SECONDS):
                    async with anyio.create_task_group() as pumps:
                        pumps.start_soon(pump, process.stdout, "stdout")
                        pumps.start_soon(pump, process.stderr, "stderr")
                code = await process.wait()
                finished = True
            tg.cancel_scope.cancel()
    finally:
        with anyio.CancelScope(shield=True):
            if not finished:  # cancelled, or the consumer raised: the command must not outlive us
                await anyio.to_thread.run_sync(_kill_marked, token)
            with contextlib.suppress(Exception):
                await process.aclose()
    if timed_out:
        return ExecExit(exit_code=137, timed_out=True)
    return ExecExit(exit_code=128 - code if code < 0 else code)


def _kill_marked(token: str) -> None:
    """SIGKILL every process of ours whose environment holds ``MARKER=<token>...`` (Linux /proc)."""
    needle = f"{MARKER}={token}".encode()
    for _ in range(20):  # a forking tree may spawn between passes: repeat until a pass finds nothing
        found = False
        for entry in os.scandir("/proc") if os.path.isdir("/proc") else ():
            if not entry.name.isdigit() or int(entry.name) == os.getpid():
                continue
            try:
                with open(f"/proc/{entry.name}/environ", "rb") as f:
                    if not any(v.startswith(needle) for v in f.read().split(b"\0")):
                        continue
                os.kill(int(entry.name), signal.SIGKILL)
                found = True
            except (OSError, ValueError):
                continue
        if not found:
            return


def _file_error(exc: OSError, path: str, sandbox_id: str) -> SandboxError:
    kind = {
        errno.ENOENT: "file_not_found",
        errno.EISDIR: "is_directory",
        errno.EACCES: "permission_denied",
        errno.EPERM: "permission_denied",
        errno.EROFS: "permission_denied",
    }.get(exc.errno or 0, "invalid_path")
    return file_error(kind, path, exc.strerror or "", provider=NAME, sandbox_id=sandbox_id)
