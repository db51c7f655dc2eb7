"""The provider SPI: a narrow async contract that every backend implements.

The facade (``AsyncSandbox``/``Sandbox``) owns validation, capability checks, initial files,
output caps, decoding, factories and sync wrapping; a provider only does the six required
primitives (``Provider.create`` and the handle's ``exec``, ``read_file``, ``write_file``,
``terminate``, ``status``) plus the optional hooks its capabilities promise (``from_id`` for
RECONNECT, ``from_name`` for NAMED, ``list`` for LIST, ...).

The contract, beyond each method's own docstring:

- **Values arrive resolved.** ``spec.secrets`` names secrets; their values come from
  :func:`sandboxkit.secrets.resolve_secrets` (call it in ``create``; never log a value).
  ``ExecRequest.user`` is a user name or a numeric uid as a string, or None for the image's user.
  ``ExecRequest.cwd`` (and ``spec.workdir``) must be created when missing, not refused.
- **Errors are SandboxErrors.** Anything else escaping a provider becomes a generic code with
  "failed unexpectedly" in the message; raise the code that tells the user what happened.
  File errors come from :func:`sandboxkit.spi.file_error` with one of its kinds.
- **OOM**: set ``ExecExit.oom_killed`` when the kernel killed a process of the command for memory;
  the facade turns it into RESOURCE_LIMIT_EXCEEDED with the partial output.
- **Lifetime**: when ``spec.lifetime`` passes the sandbox ends whatever runs in it; a command
  running then ends with SANDBOX_NOT_FOUND (or its exit, if it finished first), never hangs.
- **Idle timeout**: a sandbox is idle while no command runs in it, from any client; the clock
  starts when the last command ends. File reads and writes need not count as activity.
- **Capabilities**: the class attribute declares what the provider can ever do;
  :meth:`Provider.current_capabilities` says what this instance can honour now, and the facade
  refuses the rest with CAPABILITY_NOT_SUPPORTED before calling the provider.
"""

from __future__ import annotations

import abc
import builtins
from collections.abc import Awaitable, Callable, Mapping, Sequence
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as package_version
from typing import Any, ClassVar, TypeVar

import anyio
from pydantic import BaseModel, ConfigDict

from sandboxkit._capabilities import Capability
from sandboxkit._errors import ErrorCode, SandboxError
from sandboxkit._network import NetworkPolicy
from sandboxkit._spec import SandboxSpec
from sandboxkit._types import (
    ExecExit,
    ExecRequest,
    NetworkEvent,
    ProcessInfo,
    SandboxInfo,
    SandboxState,
    SnapshotInfo,
    SpawnRequest,
    StaleSandbox,
    StreamName,
    Tunnel,
    VolumeInfo,
)

T = TypeVar("T")
R = TypeVar("R")

#: Receives output as it arrives; awaiting it applies back-pressure to the command.
OutputCallback = Callable[[StreamName, bytes], Awaitable[None]]


def not_implemented(what: str) -> SandboxError:
    """CAPABILITY_NOT_SUPPORTED for an optional SPI hook a provider does not implement."""
    return SandboxError(
        ErrorCode.CAPABILITY_NOT_SUPPORTED,
        f"this provider does not implement {what}; check the provider's capabilities before calling it",
    )


class NoOptions(BaseModel):
    """Options type of a provider that has no provider-specific knobs."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class SandboxHandle(abc.ABC):
    """One live sandbox as its provider sees it.

    The provider sets ``id`` (always), ``name`` and ``app`` (from ``spec.name``/``spec.app`` on
    create, from the sandbox's own record on ``from_id``/``from_name``) before returning a handle.
    """

    #: provider-assigned id, stable across clients (``from_id`` takes it)
    id: str
    #: name unique within ``app``, or None
    name: str | None = None
    #: app the sandbox belongs to
    app: str = ""
    #: how many files ``read_files``/``write_files`` move at once by default; raise it when safe
    file_concurrency: ClassVar[int] = 1

    @abc.abstractmethod
    async def exec(self, request: ExecRequest, on_output: OutputCallback) -> ExecExit:
        """Run one command to its end, passing every output chunk to ``on_output`` in order.

        On ``request.timeout`` the whole process tree must be killed, and be gone, before this
        returns with ``timed_out`` set. When the calling task is cancelled the tree must be killed
        too. Set ``oom_killed`` when the kernel killed part of it for memory. Raise
        SANDBOX_NOT_FOUND when the sandbox is gone (closed, or past its lifetime).
        """

    @abc.abstractmethod
    async def read_file(self, path: str) -> bytes:
        """Return a file's bytes; FILE_OPERATION_FAILED when it is missing or not a file."""

    @abc.abstractmethod
    async def write_file(self, path: str, data: bytes) -> None:
        """Create or replace a file, creating missing parent directories."""

    @abc.abstractmethod
    async def terminate(self) -> None:
        """End the sandbox and free its resources. Idempotent: a gone sandbox is not an error."""

    @abc.abstractmethod
    async def status(self) -> SandboxState:
        """The sandbox's state now."""

    async def write_files(self, files: Sequence[tuple[str, bytes]]) -> builtins.list[SandboxError | None]:
        """Write many files; one entry per file, None on success. Override to batch.

        By default up to ``file_concurrency`` ``write_file`` calls run at once.
        """

        async def one(item: tuple[str, bytes]) -> SandboxError | None:
            await self.write_file(*item)
            return None

        return await _bounded(files, one, self.file_concurrency)

    async def read_files(self, paths: Sequence[str]) -> builtins.list[bytes | SandboxError]:
        """Read many files; one entry per path, the error where one failed. Override to batch.

        By default up to ``file_concurrency`` ``read_file`` calls run at once.
        """
        return await _bounded(paths, self.read_file, self.file_concurrency)

    # -- the stateful half (capabilities PROCESSES, PTY, PORTS, SNAPSHOTS); optional ---------------

    async def spawn(self, request: SpawnRequest) -> ProcessInfo:
        """Start a process that outlives this call and this client (PROCESSES; ``pty`` needs PTY)."""
        raise not_implemented("spawn")

    async def processes(self) -> builtins.list[ProcessInfo]:
        """Every process spawned in this sandbox, running or ended, from any client (PROCESSES)."""
        raise not_implemented("processes")

    async def process_info(self, process_id: str) -> ProcessInfo:
        """One spawned process; INVALID_ARGUMENT naming the id when there is none (PROCESSES)."""
        raise not_implemented("process_info")

    async def process_stream(self, process_id: str, on_output: OutputCallback, *, follow: bool) -> ProcessInfo:
        """Pass its retained output, then (with ``follow``) live output until it exits; return its info."""
        raise not_implemented("process_stream")

    async def process_signal(self, process_id: str, signal: str) -> None:
        """Send ``signal`` ("TERM", "KILL", "INT", ...) to the process's whole tree (PROCESSES)."""
        raise not_implemented("process_signal")

    async def process_write_stdin(self, process_id: str, data: bytes) -> None:
        """Feed bytes to the process's stdin (PROCESSES)."""
        raise not_implemented("process_write_stdin")

    async def process_close_stdin(self, process_id: str) -> None:
        """Close the process's stdin (PROCESSES)."""
        raise not_implemented("process_close_stdin")

    async def process_resize(self, process_id: str, rows: int, cols: int) -> None:
        """Resize the process's terminal (PTY)."""
        raise not_implemented("process_resize")

    async def tunnels(self) -> dict[int, Tunnel]:
        """How the caller reaches each port of ``spec.ports`` (PORTS)."""
        raise not_implemented("tunnels")

    async def snapshot(self, *, labels: Mapping[str, str], ttl: float | None = None) -> SnapshotInfo:
        """Save the filesystem; the sandbox keeps running unchanged (SNAPSHOTS).

        ``labels`` are bookkeeping labels for ``list_snapshots``; after ``ttl`` seconds (None: never)
        the snapshot may be reaped.
        """
        raise not_implemented("snapshot")

    # -- network policy (capabilities NETWORK_POLICY, CREDENTIAL_INJECTION); optional -----------------

    #: the policy in force as this handle knows it (``sb.network``); None when the sandbox has none
    network_policy: NetworkPolicy | None = None

    async def set_network(self, policy: NetworkPolicy) -> None:
        """Replace the policy in force; new connections follow it within 1 s (NETWORK_POLICY)."""
        raise not_implemented("set_network")

    async def network_log(self) -> builtins.list[NetworkEvent]:
        """What the sandbox tried to reach, allowed and denied (NETWORK_POLICY)."""
        raise not_implemented("network_log")

    @property
    def native_instance(self) -> Any:
        """The provider's own object for this sandbox (a docker Container, a modal.Sandbox)."""
        return None

    @property
    def native_client(self) -> Any:
        """The provider SDK's client that serves this sandbox."""
        return None


class Provider(abc.ABC):
    """A backend that creates and finds sandboxes. One instance may serve many sandboxes."""

    #: registry name (``provider="docker"``)
    name: ClassVar[str]
    #: what this provider can do; the facade refuses the rest with CAPABILITY_NOT_SUPPORTED
    capabilities: ClassVar[frozenset[Capability]] = frozenset()
    #: pydantic model that validates ``provider_options``
    options_type: ClassVar[type[BaseModel]] = NoOptions

    def __init__(self, auth: Mapping[str, str] | None = None) -> None:
        """``auth`` holds explicit credentials; without it a provider reads its own env vars."""
        self.auth = dict(auth or {})

    @abc.abstractmethod
    async def create(self, spec: SandboxSpec, options: BaseModel) -> SandboxHandle:
        """Create and start a sandbox; ``options`` is ``spec.provider_options`` validated."""

    async def from_id(self, sandbox_id: str) -> SandboxHandle:
        """Reconnect to a live sandbox; SANDBOX_NOT_FOUND when it is gone (capability RECONNECT)."""
        raise self._unsupported("reconnecting by id")

    async def from_name(self, app: str, name: str) -> SandboxHandle:
        """Find a live sandbox by app and name (capability NAMED)."""
        raise self._unsupported("finding sandboxes by name")

    async def list(
        self,
        *,
        app: str | None = None,
        tags: Mapping[str, str] | None = None,
        labels: Mapping[str, str] | None = None,
    ) -> builtins.list[SandboxInfo]:
        """Live sandboxes matching every filter given (capability LIST)."""
        raise self._unsupported("listing sandboxes")

    async def create_volume(self, name: str, *, labels: Mapping[str, str] | None = None) -> VolumeInfo:
        """Create a named volume that ``volumes=`` can mount (ALREADY_EXISTS if it exists). Optional."""
        raise self._unsupported("creating volumes")

    async def list_volumes(self, *, unmanaged: bool = False) -> builtins.list[VolumeInfo]:
        """Named volumes sandboxkit created; also the others with ``unmanaged``. Optional."""
        raise self._unsupported("listing volumes")

    async def delete_volume(self, name: str) -> None:
        """Delete a named volume and its data (VOLUME_ERROR if missing or in use). Optional."""
        raise self._unsupported("deleting volumes")

    async def gc(
        self, *, dry_run: bool = False, labels: Mapping[str, str] | None = None
    ) -> builtins.list[StaleSandbox]:
        """Find, and unless ``dry_run`` remove, sandboxes past their lifetime or left by a dead client. Optional."""
        raise self._unsupported("gc")

    async def list_snapshots(self, *, labels: Mapping[str, str] | None = None) -> builtins.list[SnapshotInfo]:
        """Snapshots sandboxkit made, filtered by labels (SNAPSHOTS). Optional."""
        raise self._unsupported("listing snapshots")

    async def delete_snapshot(self, snapshot_id: str) -> None:
        """Delete a snapshot; refused or deferred while a live sandbox uses it (SNAPSHOTS). Optional."""
        raise self._unsupported("deleting snapshots")

    async def current_capabilities(self) -> frozenset[Capability]:
        """What this instance can honour now, on this engine (a subset of ``capabilities``).

        The class attribute declares what the provider can ever do; override this to drop what the
        engine at hand lacks (e.g. GPU without an NVIDIA runtime). The facade checks this set.
        """
        return type(self).capabilities

    def capability_hint(self, capability: Capability) -> str:
        """Why a declared ``capability`` is not current here and how to get it ("" to say nothing)."""
        return ""

    def _unsupported(self, what: str) -> SandboxError:
        return SandboxError(
            ErrorCode.CAPABILITY_NOT_SUPPORTED,
            f"provider {self.name!r} does not support {what}; manage it with the provider's own tools",
            provider=self.name,
        )

    async def aclose(self) -> None:
        """Release clients and connections held by this provider instance."""

    def version(self) -> str:
        """The provider package's version, for reports; ``return self.distribution_version("dist")``."""
        return "unknown"

    @staticmethod
    def distribution_version(distribution: str) -> str:
        """The installed version of ``distribution`` (e.g. ``"sandboxkit-docker"``), or ``"unknown"``."""
        try:
            return package_version(distribution)
        except PackageNotFoundError:
            return "unknown"


async def _bounded(
    items: Sequence[T], call: Callable[[T], Awaitable[R]], limit: int
) -> builtins.list[R | SandboxError]:
    """``call`` on every item, at most ``limit`` at once; a SandboxError is its item's result."""
    results: builtins.list[R | SandboxError | None] = [None] * len(items)
    limiter = anyio.CapacityLimiter(max(1, limit))

    async def one(i: int, item: T) -> None:
        async with limiter:
            try:
                results[i] = await call(item)
            except SandboxError as exc:
                results[i] = exc

    async with anyio.create_task_group() as tg:
        for i, item in enumerate(items):
            tg.start_soon(one, i, item)
    return results  # type: ignore[return-value]  # every slot is filled
