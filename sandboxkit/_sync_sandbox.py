"""Sandbox: the blocking facade; every call runs the async core on a shared background loop."""

from __future__ import annotations

import builtins
import functools
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, final

from sandboxkit import _portal
from sandboxkit._async_sandbox import SNAPSHOT_TTL, AsyncSandbox, Command
from sandboxkit._capabilities import Capability
from sandboxkit._collect import DEFAULT_MAX_OUTPUT
from sandboxkit._network import NetworkPolicy
from sandboxkit._process import Process
from sandboxkit._provider import SandboxHandle
from sandboxkit._stream import ExecStream
from sandboxkit._types import (
    ExecResult,
    FileDownloadResult,
    FileUploadResult,
    NetworkEvent,
    ProcessInfo,
    SandboxInfo,
    Tunnel,
)

if TYPE_CHECKING:
    from sandboxkit._snapshot import Snapshot


@final
class Sandbox:
    """One sandbox on any provider: ``Sandbox.create(...)``, ``execute``, files, ``close``.

    Every method mirrors :class:`AsyncSandbox`; see there for details.
    """

    def __init__(self, provider: str | None = None, **options: Any) -> None:
        """Two-step form: hold the options; ``initialize()`` creates the sandbox."""
        self._async = AsyncSandbox(provider, **options)

    @classmethod
    def _wrap(cls, inner: AsyncSandbox) -> Sandbox:
        sandbox = cls.__new__(cls)
        sandbox._async = inner  # reconnected, not created here: it outlives this process unless closed
        return sandbox

    @classmethod
    def create(cls, provider: str | None = None, **options: Any) -> Sandbox:
        """Create and start a sandbox; see the README for every option."""
        return cls(provider, **options).initialize()

    def initialize(self) -> Sandbox:
        """Create the sandbox held by the two-step form; ALREADY_INITIALIZED on a second call."""
        _portal.call(self._async.initialize)
        _portal.track(self)
        return self

    @classmethod
    def from_id(
        cls, sandbox_id: str, provider: str | None = None, *, auth: Mapping[str, str] | None = None, **unknown: Any
    ) -> Sandbox:
        """Reconnect to a live sandbox by id; SANDBOX_NOT_FOUND when it is gone."""
        call = functools.partial(AsyncSandbox.from_id, sandbox_id, provider, auth=auth, **unknown)
        return cls._wrap(_portal.call(call))

    @classmethod
    def from_name(
        cls,
        app: str,
        name: str,
        provider: str | None = None,
        *,
        auth: Mapping[str, str] | None = None,
        **unknown: Any,
    ) -> Sandbox:
        """Find a live sandbox by app and name; SANDBOX_NOT_FOUND when none is running."""
        call = functools.partial(AsyncSandbox.from_name, app, name, provider, auth=auth, **unknown)
        return cls._wrap(_portal.call(call))

    @staticmethod
    def list(
        provider: str | None = None,
        *,
        app: str | None = None,
        tags: Mapping[str, str] | None = None,
        labels: Mapping[str, str] | None = None,
        auth: Mapping[str, str] | None = None,
        **unknown: Any,
    ) -> builtins.list[SandboxInfo]:
        """Live sandboxes of a provider, filtered by app and tags."""
        call = functools.partial(AsyncSandbox.list, provider, app=app, tags=tags, labels=labels, auth=auth, **unknown)
        return _portal.call(call)

    def detach(self) -> Sandbox:
        """Let the sandbox outlive this process: it is no longer closed at exit (its lifetime still ends it)."""
        _portal.untrack(self)
        return self

    def close(self) -> None:
        """Terminate the sandbox. Idempotent."""
        _portal.call(self._async.close)
        _portal.untrack(self)

    def __enter__(self) -> Sandbox:
        if self._async._handle is None and not self._async._closed:
            self.initialize()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # identity ------------------------------------------------------------
    id = property(lambda self: self._async.id, doc="The provider's id for this sandbox.")
    name = property(lambda self: self._async.name, doc="The sandbox's name, or None.")
    app = property(lambda self: self._async.app, doc="The app the sandbox belongs to.")
    provider = property(lambda self: self._async.provider, doc="The provider's registry name.")
    instance = property(lambda self: self._async.instance, doc="The provider's native sandbox object.")
    client = property(lambda self: self._async.client, doc="The provider SDK's client.")

    @property
    def capabilities(self) -> frozenset[Capability]:
        """What this sandbox's provider can honour now, on this machine (``Provider.current_capabilities``)."""
        return _portal.call(self._async._current_capabilities)

    @property
    def handle(self) -> SandboxHandle:
        """The provider SPI handle."""
        return self._async.handle

    @property
    def aio(self) -> AsyncSandbox:
        """The async twin of this sandbox (use it on the loop that ``sandboxkit`` runs, or your own)."""
        return self._async

    def __repr__(self) -> str:
        return repr(self._async).replace("<AsyncSandbox", "<Sandbox", 1)

    # commands ------------------------------------------------------------
    def execute(
        self,
        command: Command,
        *,
        timeout: float | None = None,
        cwd: str | None = None,
        env: Mapping[str, str] | None = None,
        stdin: str | bytes | None = None,
        user: str | int | None = None,
        check: bool = False,
        max_output: int = DEFAULT_MAX_OUTPUT,
    ) -> ExecResult:
        """Run a command to its end; a string runs under ``sh -c``, a list as argv."""
        return _portal.call(
            functools.partial(
                self._async.execute,
                command,
                timeout=timeout,
                cwd=cwd,
                env=env,
                stdin=stdin,
                user=user,
                check=check,
                max_output=max_output,
            )
        )

    def stream(
        self,
        command: Command,
        *,
        timeout: float | None = None,
        cwd: str | None = None,
        env: Mapping[str, str] | None = None,
        stdin: str | bytes | None = None,
        user: str | int | None = None,
        check: bool = False,
        max_output: int = DEFAULT_MAX_OUTPUT,
    ) -> ExecStream:
        """Run a command and iterate its output live; ``.result`` is set when the loop ends."""
        inner = self._async.stream(
            command, timeout=timeout, cwd=cwd, env=env, stdin=stdin, user=user, check=check, max_output=max_output
        )
        return ExecStream(inner)

    # network -------------------------------------------------------------
    @property
    def network(self) -> NetworkPolicy | None:
        """The egress policy in force; None without one."""
        return self._async.network

    def set_network(self, policy: NetworkPolicy) -> None:
        """Replace the egress policy; new connections follow it within 1 s."""
        _portal.call(self._async.set_network, policy)

    def network_log(self) -> builtins.list[NetworkEvent]:
        """What the sandbox tried to reach, oldest first, allowed and denied."""
        return _portal.call(self._async.network_log)

    # files ---------------------------------------------------------------
    def write_file(self, path: str, content: str | bytes) -> None:
        """Create or replace a file (parents are created)."""
        _portal.call(self._async.write_file, path, content)

    def read_file(self, path: str) -> bytes:
        """A file's bytes."""
        return _portal.call(self._async.read_file, path)

    def upload_files(self, files: Sequence[tuple[str, str | bytes]]) -> builtins.list[FileUploadResult]:
        """Write many files; one result per file."""
        return _portal.call(self._async.upload_files, files)

    def download_files(self, paths: Sequence[str]) -> builtins.list[FileDownloadResult]:
        """Read many files; one result per path."""
        return _portal.call(self._async.download_files, paths)

    # processes -------------------------------------------------------------
    def spawn(
        self,
        command: Command,
        *,
        cwd: str | None = None,
        env: Mapping[str, str] | None = None,
        user: str | int | None = None,
        pty: bool = False,
        size: tuple[int, int] | None = None,
    ) -> Process:
        """Start a command in the background; it outlives this call and this client."""
        call = functools.partial(self._async.spawn, command, cwd=cwd, env=env, user=user, pty=pty, size=size)
        return Process(_portal.call(call))

    def processes(self) -> builtins.list[ProcessInfo]:
        """Every process spawned in this sandbox, by any client."""
        return _portal.call(self._async.processes)

    def process(self, process_id: str) -> Process:
        """Reattach to a spawned process by id."""
        return Process(_portal.call(self._async.process, process_id))

    # ports and snapshots ---------------------------------------------------
    def tunnels(self) -> dict[int, Tunnel]:
        """How the caller's machine reaches each port given as ``ports=``."""
        return _portal.call(self._async.tunnels)

    def url(self, port: int) -> str:
        """A URL for ``port`` that a plain HTTP client on the caller's machine can open."""
        return _portal.call(self._async.url, port)

    def wait_for_port(self, port: int, *, timeout: float = 30.0) -> None:
        """Return once something listens on ``port`` inside the sandbox; COMMAND_TIMEOUT after ``timeout``."""
        _portal.call(functools.partial(self._async.wait_for_port, port, timeout=timeout))

    def snapshot(self, *, ttl: float | None = SNAPSHOT_TTL) -> Snapshot:
        """Save the filesystem (the sandbox keeps running); ``Sandbox.create(snapshot=...)`` starts from it."""
        return _portal.call(functools.partial(self._async.snapshot, ttl=ttl))
