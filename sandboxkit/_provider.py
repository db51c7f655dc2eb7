"""The provider SPI: a narrow async contract that every backend implements.

The facade (``AsyncSandbox``/``Sandbox``) owns validation, capability checks, initial files,
output caps, decoding, factories and sync wrapping; a provider only does the primitives below.
"""

from __future__ import annotations

import abc
import builtins
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict

from sandboxkit._capabilities import Capability
from sandboxkit._errors import ErrorCode, SandboxError
from sandboxkit._spec import SandboxSpec
from sandboxkit._types import (
    ExecExit,
    ExecRequest,
    SandboxInfo,
    SandboxState,
    StaleSandbox,
    StreamName,
    VolumeInfo,
)

#: Receives output as it arrives; awaiting it applies back-pressure to the command.
OutputCallback = Callable[[StreamName, bytes], Awaitable[None]]


class NoOptions(BaseModel):
    """Options type of a provider that has no provider-specific knobs."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class SandboxHandle(abc.ABC):
    """One live sandbox as its provider sees it."""

    #: provider-assigned id, stable across clients (``from_id`` takes it)
    id: str
    #: name unique within ``app``, or None
    name: str | None = None
    #: app the sandbox belongs to
    app: str = ""

    @abc.abstractmethod
    async def exec(self, request: ExecRequest, on_output: OutputCallback) -> ExecExit:
        """Run one command to its end, passing every output chunk to ``on_output`` in order.

        On ``request.timeout`` the whole process tree must be killed and ``timed_out`` set.
        Raise SANDBOX_NOT_FOUND when the sandbox is gone.
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
        """Write many files; one entry per file, None on success. Override to batch."""
        results: builtins.list[SandboxError | None] = []
        for path, data in files:
            try:
                await self.write_file(path, data)
                results.append(None)
            except SandboxError as exc:
                results.append(exc)
        return results

    async def read_files(self, paths: Sequence[str]) -> builtins.list[bytes | SandboxError]:
        """Read many files; one entry per path, the error where one failed. Override to batch."""
        results: builtins.list[bytes | SandboxError] = []
        for path in paths:
            try:
                results.append(await self.read_file(path))
            except SandboxError as exc:
                results.append(exc)
        return results

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

    @abc.abstractmethod
    async def from_id(self, sandbox_id: str) -> SandboxHandle:
        """Reconnect to a live sandbox; SANDBOX_NOT_FOUND when it is gone."""

    async def from_name(self, app: str, name: str) -> SandboxHandle:
        """Find a live sandbox by app and name (capability NAMED)."""
        raise NotImplementedError

    async def list(
        self,
        *,
        app: str | None = None,
        tags: Mapping[str, str] | None = None,
        labels: Mapping[str, str] | None = None,
    ) -> builtins.list[SandboxInfo]:
        """Live sandboxes matching every filter given (capability LIST)."""
        raise NotImplementedError

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

    def _unsupported(self, what: str) -> SandboxError:
        return SandboxError(
            ErrorCode.CAPABILITY_NOT_SUPPORTED,
            f"provider {self.name!r} does not support {what}; manage it with the provider's own tools",
            provider=self.name,
        )

    async def aclose(self) -> None:
        """Release clients and connections held by this provider instance."""

    def version(self) -> str:
        """The provider package's version, for reports."""
        return "unknown"
