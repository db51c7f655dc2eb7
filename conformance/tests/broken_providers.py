"""Deliberately broken providers, for the meta-tests: each must make the conformance suite fail.

They are real providers: each wraps the real Docker provider and breaks exactly one thing, the
way real provider bugs look. ``HonestProvider`` breaks nothing (the control) and
``NarrowProvider`` honestly declares fewer capabilities. A test's conftest registers this
module in-process with ``sandboxkit._registry.registry.register(broken_providers)``.
"""

from __future__ import annotations

import asyncio
import builtins
import dataclasses
from collections.abc import Iterable, Sequence
from typing import Any, ClassVar

from pydantic import BaseModel
from sandboxkit_docker.provider import DockerProvider

from sandboxkit import Capability
from sandboxkit.spi import (
    ExecExit,
    ExecRequest,
    OutputCallback,
    ProviderRecord,
    SandboxError,
    SandboxHandle,
    SandboxSpec,
    SandboxState,
    hookimpl,
)


class Delegating(SandboxHandle):
    """A handle that forwards every call to the Docker provider's handle."""

    def __init__(self, inner: SandboxHandle) -> None:
        self.inner = inner
        self.id, self.name, self.app = inner.id, inner.name, inner.app

    async def exec(self, request: ExecRequest, on_output: OutputCallback) -> ExecExit:
        return await self.inner.exec(request, on_output)

    async def read_file(self, path: str) -> bytes:
        return await self.inner.read_file(path)

    async def write_file(self, path: str, data: bytes) -> None:
        await self.inner.write_file(path, data)

    async def write_files(self, files: Sequence[tuple[str, bytes]]) -> builtins.list[SandboxError | None]:
        return await self.inner.write_files(files)

    async def read_files(self, paths: Sequence[str]) -> builtins.list[bytes | SandboxError]:
        return await self.inner.read_files(paths)

    async def terminate(self) -> None:
        await self.inner.terminate()

    async def status(self) -> SandboxState:
        return await self.inner.status()


class HonestProvider(DockerProvider):
    """The control: Docker behind the same wrapping, nothing broken."""

    name: ClassVar[str] = "sbkc-honest"
    handle_type: ClassVar[type[Delegating]] = Delegating

    async def create(self, spec: SandboxSpec, options: BaseModel) -> Any:
        return self.handle_type(await super().create(spec, options))

    async def from_id(self, sandbox_id: str) -> Any:
        return self.handle_type(await super().from_id(sandbox_id))

    async def from_name(self, app: str, name: str) -> Any:
        return self.handle_type(await super().from_name(app, name))


class CollapsedExitCode(Delegating):
    async def exec(self, request: ExecRequest, on_output: OutputCallback) -> ExecExit:
        outcome = await self.inner.exec(request, on_output)
        return dataclasses.replace(outcome, exit_code=min(outcome.exit_code, 1))


class WrongExitCodeProvider(HonestProvider):
    """Broken: every failing command exits 1, whatever its real exit code."""

    name: ClassVar[str] = "sbkc-wrong-exit-code"
    handle_type: ClassVar[type[Delegating]] = CollapsedExitCode


class ReportsTimeoutAsExit(Delegating):
    async def exec(self, request: ExecRequest, on_output: OutputCallback) -> ExecExit:
        outcome = await self.inner.exec(request, on_output)
        return dataclasses.replace(outcome, timed_out=False)


class SwallowedTimeoutProvider(HonestProvider):
    """Broken: kills the command at its timeout but reports an ordinary exit (137) instead of a timeout."""

    name: ClassVar[str] = "sbkc-swallowed-timeout"
    handle_type: ClassVar[type[Delegating]] = ReportsTimeoutAsExit


class DropsTimeout(Delegating):
    async def exec(self, request: ExecRequest, on_output: OutputCallback) -> ExecExit:
        return await self.inner.exec(dataclasses.replace(request, timeout=None), on_output)


class IgnoredTimeoutProvider(HonestProvider):
    """Broken: never passes the per-call timeout on; only the facade's late safety net stops the command."""

    name: ClassVar[str] = "sbkc-ignored-timeout"
    handle_type: ClassVar[type[Delegating]] = DropsTimeout


class NeverTerminates(Delegating):
    async def terminate(self) -> None:
        return None  # "closed": the container runs on until its lifetime ends


class LeakingProvider(HonestProvider):
    """Broken: terminate() returns without ending the sandbox."""

    name: ClassVar[str] = "sbkc-leaking"
    handle_type: ClassVar[type[Delegating]] = NeverTerminates


class ReportsTimeoutEarly(Delegating):
    async def exec(self, request: ExecRequest, on_output: OutputCallback) -> ExecExit:
        if request.timeout is None:
            return await self.inner.exec(request, on_output)
        inner = asyncio.ensure_future(self.inner.exec(dataclasses.replace(request, timeout=None), on_output))
        done, _ = await asyncio.wait([inner], timeout=request.timeout)
        if done:
            return inner.result()
        asyncio.get_running_loop().call_later(2.0, inner.cancel)  # the kill comes, but after the report
        return ExecExit(exit_code=137, timed_out=True)


class LateKillProvider(HonestProvider):
    """Broken: reports COMMAND_TIMEOUT at the deadline and kills the tree 2 s later (as Modal's client did)."""

    name: ClassVar[str] = "sbkc-late-kill"
    handle_type: ClassVar[type[Delegating]] = ReportsTimeoutEarly


class OrphansOnCancel(Delegating):
    async def exec(self, request: ExecRequest, on_output: OutputCallback) -> ExecExit:
        inner = asyncio.ensure_future(self.inner.exec(request, on_output))
        self.orphans.add(inner)
        inner.add_done_callback(self.orphans.discard)
        return await asyncio.shield(inner)  # a cancelled caller leaves the command running

    orphans: ClassVar[set[asyncio.Future[ExecExit]]] = set()


class OrphaningProvider(HonestProvider):
    """Broken: a cancelled exec returns at once and leaves the command running (as Modal's did)."""

    name: ClassVar[str] = "sbkc-orphaning"
    handle_type: ClassVar[type[Delegating]] = OrphansOnCancel


class SkeletonProvider(HonestProvider):
    """Unfinished, the guide's step 3: create() is not written yet."""

    name: ClassVar[str] = "sbkc-skeleton"

    async def create(self, spec: SandboxSpec, options: BaseModel) -> Any:
        raise NotImplementedError


class NoExec(Delegating):
    async def exec(self, request: ExecRequest, on_output: OutputCallback) -> ExecExit:
        raise NotImplementedError


class HalfWrittenProvider(HonestProvider):
    """Unfinished: sandboxes work, exec() is not written yet."""

    name: ClassVar[str] = "sbkc-half-written"
    handle_type: ClassVar[type[Delegating]] = NoExec


class LyingNetworkProvider(HonestProvider):
    """Broken: declares NETWORK_BLOCK but creates every sandbox with its network."""

    name: ClassVar[str] = "sbkc-lying-network"
    capabilities: ClassVar[frozenset[Capability]] = DockerProvider.capabilities | {Capability.NETWORK_BLOCK}

    async def create(self, spec: SandboxSpec, options: BaseModel) -> Any:
        return await super().create(spec.model_copy(update={"block_network": False}), options)


class NarrowProvider(HonestProvider):
    """Not broken: honestly declares fewer capabilities than Docker has (no GPU, STDIN, USER, ...)."""

    name: ClassVar[str] = "sbkc-narrow"
    capabilities: ClassVar[frozenset[Capability]] = frozenset(
        {
            Capability.STREAMING,
            Capability.LIST,
            Capability.RECONNECT,
            Capability.NAMED,
            Capability.TAGS,
            Capability.NETWORK_BLOCK,
            Capability.RESOURCE_LIMITS,
        }
    )


PROVIDERS: list[type[HonestProvider]] = [
    HonestProvider,
    WrongExitCodeProvider,
    SwallowedTimeoutProvider,
    IgnoredTimeoutProvider,
    LeakingProvider,
    LyingNetworkProvider,
    NarrowProvider,
    LateKillProvider,
    OrphaningProvider,
    SkeletonProvider,
    HalfWrittenProvider,
]


@hookimpl
def sandboxkit_providers() -> Iterable[ProviderRecord]:
    """Every provider of this module, under its own name."""
    return [ProviderRecord(name=cls.name, factory=f"{__name__}:{cls.__name__}") for cls in PROVIDERS]
