"""ModalProvider: sandboxes on Modal (or a Modal-compatible server such as the emulator), via the modal SDK."""

from __future__ import annotations

import builtins
import datetime as dt
import ipaddress
import math
import shlex
import time
import uuid
import warnings
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, Literal

import anyio
import modal
import modal.exception
from pydantic import BaseModel, ConfigDict, Field, model_validator

from sandboxkit import Capability
from sandboxkit.spi import (
    ErrorCode,
    ExecExit,
    ExecRequest,
    InSandboxProcesses,
    NetworkPolicy,
    OutputCallback,
    Provider,
    SandboxError,
    SandboxHandle,
    SandboxInfo,
    SandboxSpec,
    SandboxState,
    SnapshotInfo,
    StreamName,
    SupervisedProcesses,
    Tunnel,
    VolumeInfo,
)
from sandboxkit_modal import _network, _tags
from sandboxkit_modal._client import ClientCache, check_auth
from sandboxkit_modal._errors import PROVIDER, Op, map_error, translate
from sandboxkit_modal._kill import MARKER, kill_script

#: Largest stdin chunk sent in one message (Modal buffers at most 16 MiB per drain).
STDIN_CHUNK = 16 * 1024 * 1024
#: Exit codes that mean "killed"; one right at the deadline counts as the timeout firing.
_KILLED = frozenset({137, 124, 143})
#: Longest argv (bytes) sent as is; Modal's client refuses more than 64 KiB of exec arguments.
ARGV_LIMIT = 60_000
#: Longest a tree kill (after a cancellation or a timeout) may take.
KILL_SECONDS = 30.0
#: How many file transfers run at once in a batch.
FILE_CONCURRENCY = 8

Seconds = float


class ModalOptions(BaseModel):
    """Modal-only knobs, passed as ``provider_options={...}``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: region(s) to schedule in, e.g. "us-east" or ["us-east", "us-west"]
    region: str | list[str] | None = None
    #: cloud provider, e.g. "aws", "gcp", "oci"
    cloud: str | None = None
    #: (request, limit) in cores; replaces ``cpu=`` (which sets both to the same value)
    cpu: tuple[float, float] | None = None
    #: (request, limit) in MiB; replaces ``memory_mib=`` (which sets both to the same value)
    memory: tuple[int, int] | None = None
    #: CIDRs the sandbox may reach; None leaves outbound traffic open
    outbound_cidr_allowlist: list[str] | None = None
    #: domains the sandbox may reach (``*.example.com`` wildcards); None leaves it open
    outbound_domain_allowlist: list[str] | None = None
    #: container ports to expose through TLS tunnels (see ``sb.instance.tunnels()``)
    encrypted_ports: list[int] = Field(default_factory=list)
    #: container ports to expose through plain TCP tunnels
    unencrypted_ports: list[int] = Field(default_factory=list)
    #: container ports to expose through HTTP/2 tunnels
    h2_ports: list[int] = Field(default_factory=list)
    #: isolation runtime; None is Modal's default (gVisor)
    runtime: Literal["gvisor", "vm"] | None = None

    @model_validator(mode="after")
    def _limits(self) -> ModalOptions:
        for what, pair in (("cpu", self.cpu), ("memory", self.memory)):
            if pair is not None and not 0 < pair[0] <= pair[1]:
                raise ValueError(f"{what} must be (request, limit) with 0 < request <= limit, got {pair}")
        return self


def _ceil(seconds: float | None) -> int | None:
    return None if seconds is None else max(1, math.ceil(seconds))


class ModalProvider(Provider):
    """Creates each sandbox with ``modal.Sandbox.create`` in an app looked up (or made) by name."""

    name: ClassVar[str] = PROVIDER
    capabilities: ClassVar[frozenset[Capability]] = frozenset(
        {
            Capability.GPU,
            Capability.STDIN,
            Capability.STREAMING,
            Capability.VOLUMES,
            Capability.SECRETS,
            Capability.NETWORK_BLOCK,
            Capability.NAMED,
            Capability.LIST,
            Capability.TAGS,
            Capability.IDLE_TIMEOUT,
            Capability.RESOURCE_LIMITS,
            Capability.RECONNECT,
            Capability.PORTS,
            Capability.SNAPSHOTS,
            Capability.PROCESSES,  # an in-sandbox supervisor over Sandbox.exec (needs python3 in the image)
            Capability.PTY,
            Capability.NETWORK_POLICY,  # outbound allowlists; no network_log, no injection with them (_network)
        }
    )
    options_type: ClassVar[type[BaseModel]] = ModalOptions

    def __init__(self, auth: Mapping[str, str] | None = None) -> None:
        super().__init__(auth)
        check_auth(self.auth)
        self._clients = ClientCache()

    def version(self) -> str:
        return self.distribution_version("sandboxkit-modal")

    async def client(self) -> modal.Client:
        """The verified modal.Client for the current credentials and server."""
        return await self._clients.get(self.auth)

    async def aclose(self) -> None:
        await self._clients.aclose()

    # ------------------------------------------------------------ create
    async def create(self, spec: SandboxSpec, options: BaseModel) -> ModalSandbox:
        assert isinstance(options, ModalOptions)
        reserved = sorted(k for k in spec.tags if k.startswith(_tags.RESERVED))
        if reserved:
            raise SandboxError(
                ErrorCode.INVALID_ARGUMENT,
                f"tag keys starting with {_tags.RESERVED!r} are reserved for sandboxkit: {', '.join(reserved)}",
                provider=PROVIDER,
            )
        if (options.cpu and spec.cpu is not None) or (options.memory and spec.memory_mib is not None):
            raise SandboxError(
                ErrorCode.INVALID_ARGUMENT,
                "give cpu/memory either as cpu=/memory_mib= or as provider_options cpu/memory tuples, not both",
                provider=PROVIDER,
            )
        cidrs, domains = options.outbound_cidr_allowlist, options.outbound_domain_allowlist
        if spec.network is not None:
            if cidrs is not None or domains is not None:
                raise SandboxError(
                    ErrorCode.INVALID_ARGUMENT,
                    "give network= or provider_options outbound_*_allowlist, not both",
                    provider=PROVIDER,
                )
            cidrs, domains = _network.allowlists(spec.network)
        client = await self.client()
        with translate(op=Op.CREATE):
            app = await modal.App.lookup.aio(spec.app, create_if_missing=True, client=client)
        volumes = await self._volumes(spec.volumes, client)
        secrets = await self._secrets(spec.secrets, client)
        kwargs: dict[str, Any] = {
            "app": app,
            "client": client,
            "image": _image(spec, client),
            "timeout": _ceil(spec.timeout),
            "idle_timeout": _ceil(spec.idle_timeout),
            "workdir": spec.workdir,
            "gpu": spec.gpu,
            "cpu": options.cpu or (None if spec.cpu is None else (spec.cpu, spec.cpu)),
            "memory": options.memory or (None if spec.memory_mib is None else (spec.memory_mib, spec.memory_mib)),
            "env": dict(spec.env) or None,
            "secrets": secrets,
            "volumes": volumes,
            "block_network": spec.block_network,
            "name": spec.name,
            "tags": _tags.encode(
                tags=spec.tags, labels=spec.labels, app=spec.app, name=spec.name, created_at=time.time()
            ),
            "region": options.region,
            "cloud": options.cloud,
            "outbound_cidr_allowlist": cidrs,
            "outbound_domain_allowlist": domains,
            # ports= become TLS tunnels: an https URL any HTTP client opens
            "encrypted_ports": sorted({*options.encrypted_ports, *spec.ports}),
            "unencrypted_ports": options.unencrypted_ports,
            "h2_ports": options.h2_ports,
            "runtime": options.runtime,
        }
        with translate(op=Op.CREATE):
            sandbox = await modal.Sandbox.create.aio(**kwargs)
        handle = ModalSandbox(
            self, sandbox, client, app=spec.app, name=spec.name, memory_limited=kwargs["memory"] is not None
        )
        handle.network_policy = spec.network
        return handle

    async def _volumes(self, volumes: Mapping[str, str], client: modal.Client) -> dict[str | Any, Any]:
        found: dict[str | Any, Any] = {}
        for path, name in volumes.items():
            found[path] = await _hydrate(
                modal.Volume.from_name(name, client=client),
                client,
                ErrorCode.VOLUME_ERROR,
                f"volume {name!r} does not exist; create it with `modal volume create {name}` "
                f"(or `sandboxkit volume create --provider modal {name}`)",
            )
        return found

    async def _secrets(self, names: Sequence[str], client: modal.Client) -> list[Any]:
        return [
            await _hydrate(
                modal.Secret.from_name(name, client=client),
                client,
                ErrorCode.SANDBOX_CREATION_FAILED,
                f"secret {name!r} does not exist; create it with `modal secret create {name} KEY=VALUE`",
            )
            for name in names
        ]

    # ------------------------------------------------------------ volumes
    async def create_volume(self, name: str, *, labels: Mapping[str, str] | None = None) -> VolumeInfo:
        """Create a Modal Volume (``modal.Volume.objects.create``); Modal volumes carry no labels."""
        client = await self.client()
        with translate():
            await modal.Volume.objects.create.aio(name, client=client)
        return VolumeInfo(name=name, provider=PROVIDER, created_at=dt.datetime.now(dt.UTC), managed=True)

    async def list_volumes(self, *, unmanaged: bool = False) -> builtins.list[VolumeInfo]:
        """Every named Volume of the environment (Modal cannot tell which ones sandboxkit made)."""
        client = await self.client()
        with translate():
            volumes = await modal.Volume.objects.list.aio(client=client)
            infos = [await volume.info.aio() for volume in volumes]
        return sorted(
            (VolumeInfo(name=i.name or "", provider=PROVIDER, created_at=i.created_at, managed=True) for i in infos),
            key=lambda v: v.name,
        )

    async def delete_volume(self, name: str) -> None:
        """Delete a Modal Volume and its data; VOLUME_ERROR when there is none by that name."""
        client = await self.client()
        try:
            with translate():
                await modal.Volume.objects.delete.aio(name, client=client)
        except SandboxError as exc:
            if exc.code != ErrorCode.SANDBOX_NOT_FOUND:
                raise
            raise SandboxError(ErrorCode.VOLUME_ERROR, f"no Modal volume named {name!r}", provider=PROVIDER) from None

    # ------------------------------------------------------------ find
    async def from_id(self, sandbox_id: str) -> ModalSandbox:
        client = await self.client()
        with translate(sandbox_id=sandbox_id):
            sandbox = await modal.Sandbox.from_id.aio(sandbox_id, client=client)
        return await self._attach(sandbox, client)

    async def from_name(self, app: str, name: str) -> ModalSandbox:
        client = await self.client()
        try:
            with translate():
                sandbox = await modal.Sandbox.from_name.aio(app, name, client=client)
        except SandboxError as exc:
            if exc.code != ErrorCode.SANDBOX_NOT_FOUND:
                raise
            raise SandboxError(
                ErrorCode.SANDBOX_NOT_FOUND, f"no running sandbox named {name!r} in app {app!r}", provider=PROVIDER
            ) from None
        return await self._attach(sandbox, client, app=app, name=name)

    async def _attach(
        self, sandbox: modal.Sandbox, client: modal.Client, *, app: str | None = None, name: str | None = None
    ) -> ModalSandbox:
        if sandbox.returncode is not None:
            raise SandboxError(
                ErrorCode.SANDBOX_NOT_FOUND,
                f"sandbox {sandbox.object_id!r} has finished (exit code {sandbox.returncode}); "
                "it was closed or its lifetime ended",
                provider=PROVIDER,
                sandbox_id=sandbox.object_id,
            )
        with translate(sandbox_id=sandbox.object_id):
            tags = await sandbox.get_tags.aio()
        return ModalSandbox(
            self,
            sandbox,
            client,
            app=app if app is not None else tags.get(_tags.APP, ""),
            name=name if name is not None else tags.get(_tags.NAME),
            memory_limited=True,
        )

    async def list(
        self,
        *,
        app: str | None = None,
        tags: Mapping[str, str] | None = None,
        labels: Mapping[str, str] | None = None,
    ) -> builtins.list[SandboxInfo]:
        client = await self.client()
        app_id = None
        if app is not None:
            try:
                with translate():
                    app_id = (await modal.App.lookup.aio(app, client=client)).app_id
            except SandboxError as exc:
                if exc.code == ErrorCode.SANDBOX_NOT_FOUND:
                    return []
                raise
        wanted = {**(tags or {}), **_tags.label_filter(labels or {})}
        sandboxes: builtins.list[modal.Sandbox] = []
        with translate(), warnings.catch_warnings():
            # without an app, sandboxkit scans every app on purpose; Modal warns about that scan each time
            warnings.filterwarnings(
                "ignore", ".*Listing Sandboxes without an `app_id`", modal.exception.DeprecationError
            )
            async for sandbox in modal.Sandbox.list.aio(app_id=app_id, tags=wanted or None, client=client):
                sandboxes.append(sandbox)
        infos: builtins.list[SandboxInfo | None] = [None] * len(sandboxes)
        limiter = anyio.CapacityLimiter(FILE_CONCURRENCY)

        async def describe(i: int, sandbox: modal.Sandbox) -> None:
            async with limiter:
                try:
                    with translate(sandbox_id=sandbox.object_id):
                        found = await sandbox.get_tags.aio()
                except SandboxError as exc:
                    if exc.code == ErrorCode.SANDBOX_NOT_FOUND:  # ended meanwhile
                        return
                    raise
            infos[i] = SandboxInfo(
                id=sandbox.object_id,
                name=found.get(_tags.NAME),
                app=found.get(_tags.APP, app or ""),
                tags=_tags.user_tags(found),
                state=SandboxState.RUNNING,
                created_at=_tags.created_at(found),
                provider=PROVIDER,
            )

        async with anyio.create_task_group() as tg:
            for i, sandbox in enumerate(sandboxes):
                tg.start_soon(describe, i, sandbox)
        return [info for info in infos if info is not None]


class ModalSandbox(SupervisedProcesses, SandboxHandle):
    """One modal.Sandbox. Commands and files go through Modal's task command router."""

    file_concurrency: ClassVar[int] = FILE_CONCURRENCY

    def __init__(
        self,
        provider: ModalProvider,
        sandbox: modal.Sandbox,
        client: modal.Client,
        *,
        app: str,
        name: str | None,
        memory_limited: bool,
    ) -> None:
        self.provider = provider
        self.sandbox = sandbox
        self.client = client
        self.id = sandbox.object_id
        self.app = app
        self.name = name
        self.memory_limited = memory_limited
        self._oom_kills = 0
        self.supervisor = InSandboxProcesses(self.exec, provider=PROVIDER, sandbox_id=self.id)

    @property
    def native_instance(self) -> modal.Sandbox:
        return self.sandbox

    async def set_network(self, policy: NetworkPolicy) -> None:
        cidrs, domains = _network.allowlists(policy)
        with translate(sandbox_id=self.id):
            await self.sandbox._experimental_set_outbound_network_policy.aio(
                outbound_cidr_allowlist=cidrs, outbound_domain_allowlist=domains
            )
        self.network_policy = policy

    @property
    def native_client(self) -> modal.Client:
        return self.client

    # ------------------------------------------------------------ commands
    async def exec(self, request: ExecRequest, on_output: OutputCallback) -> ExecExit:
        argv = await self._argv(request.argv)
        token = uuid.uuid4().hex
        lock = anyio.Lock()

        async def pump(stream: StreamName, reader: Any) -> None:
            async for chunk in reader:
                if chunk:
                    async with lock:
                        await on_output(stream, chunk)

        started = time.monotonic()
        finished = False
        try:
            with translate(sandbox_id=self.id):
                process = await self.sandbox.exec.aio(
                    *argv,
                    timeout=_ceil(request.timeout),
                    workdir=request.cwd,
                    env={**request.env, MARKER: token},
                    text=False,
                )
                await _send_stdin(process, request.stdin)
                async with anyio.create_task_group() as tg:
                    tg.start_soon(pump, "stdout", process.stdout)
                    tg.start_soon(pump, "stderr", process.stderr)
                code = await process.wait.aio()
            finished = True
        finally:
            if not finished:  # cancelled, or the consumer raised: the command must not outlive us
                with anyio.CancelScope(shield=True):
                    await self._kill(token)
        elapsed = time.monotonic() - started
        # Modal reports an exec that ran past its timeout as -1; a kill right at the deadline is the same thing
        timed_out = request.timeout is not None and (code == -1 or (code in _KILLED and elapsed >= request.timeout))
        if timed_out:  # the -1 is the client's own deadline: the tree may still run; it is dead before we report
            await self._kill(token)
        if code == -1 and not timed_out:
            await self._raise_if_gone()
        oom = code == 137 and not timed_out and self.memory_limited and await self._oom_killed()
        return ExecExit(exit_code=137 if code == -1 else code, timed_out=timed_out, oom_killed=oom)

    async def _kill(self, token: str) -> None:
        """Kill every process of the command marked ``token``; bounded, and quiet when the sandbox is gone."""
        with anyio.move_on_after(KILL_SECONDS):
            for _ in range(5):
                try:
                    with translate(sandbox_id=self.id):
                        killer = await self.sandbox.exec.aio(*kill_script(token), timeout=math.ceil(KILL_SECONDS))
                        if await killer.wait.aio() == 0:
                            return
                except SandboxError as exc:
                    if exc.code == ErrorCode.SANDBOX_NOT_FOUND:
                        return
                await anyio.sleep(0.2)  # at the pids limit the killer itself may fail to start

    async def _argv(self, argv: Sequence[str]) -> builtins.list[str]:
        """``argv``, or for one past Modal's limit, a one-shot script in the sandbox that execs it."""
        if sum(len(a.encode()) for a in argv) <= ARGV_LIMIT:
            return list(argv)
        path = f"/tmp/.sandboxkit-argv-{uuid.uuid4().hex}.sh"
        script = 'rm -f -- "$0"\nexec ' + " ".join(shlex.quote(a) for a in argv) + "\n"
        await self.write_file(path, script.encode())
        return ["sh", path]

    async def _raise_if_gone(self) -> None:
        if await self.status() not in (SandboxState.RUNNING, SandboxState.PENDING):
            raise SandboxError(
                ErrorCode.SANDBOX_NOT_FOUND,
                "the sandbox stopped while the command ran (closed, expired, or killed from outside)",
                provider=PROVIDER,
                sandbox_id=self.id,
            )

    async def _oom_killed(self) -> bool:
        """Whether the kernel's OOM killer fired since the last check (cgroup v2 or v1 counters)."""
        script = (
            "for f in /sys/fs/cgroup/memory.events /sys/fs/cgroup/memory/memory.oom_control; do "
            '[ -r "$f" ] && sed -n "s/^oom_kill //p" "$f" && exit 0; done; echo 0'
        )
        try:
            with translate(sandbox_id=self.id):
                process = await self.sandbox.exec.aio("sh", "-c", script, timeout=10)
                out = await process.stdout.read.aio()
                await process.wait.aio()
            count = int(out.split()[0]) if out.split() else 0
        except (SandboxError, ValueError):
            return False
        fired, self._oom_kills = count > self._oom_kills, max(count, self._oom_kills)
        return fired

    # ------------------------------------------------------------ lifecycle
    async def status(self) -> SandboxState:
        try:
            with translate(sandbox_id=self.id):
                code = await self.sandbox.poll.aio()
        except SandboxError as exc:
            if exc.code == ErrorCode.SANDBOX_NOT_FOUND:
                return SandboxState.TERMINATED
            raise
        if code is None:
            return SandboxState.RUNNING
        return SandboxState.TERMINATED if code == 137 else SandboxState.STOPPED

    async def terminate(self) -> None:
        try:
            with translate(sandbox_id=self.id):
                await self.sandbox.terminate.aio()
        except SandboxError as exc:
            if exc.code != ErrorCode.SANDBOX_NOT_FOUND:
                raise
        finally:
            with anyio.CancelScope(shield=True):
                try:
                    await self.sandbox.detach.aio()  # type: ignore[no-untyped-call]
                except modal.exception.Error:
                    pass

    # ------------------------------------------------------------ files
    async def read_file(self, path: str) -> bytes:
        with translate(sandbox_id=self.id, path=path):
            return await self.sandbox.filesystem.read_bytes.aio(path)

    async def write_file(self, path: str, data: bytes) -> None:
        with translate(sandbox_id=self.id, path=path):
            await self.sandbox.filesystem.write_bytes.aio(data, path)

    async def read_files(self, paths: Sequence[str]) -> builtins.list[bytes | SandboxError]:
        results = await super().read_files(paths)
        _raise_if_sandbox_gone(results)
        return results

    async def write_files(self, files: Sequence[tuple[str, bytes]]) -> builtins.list[SandboxError | None]:
        results = await super().write_files(files)
        _raise_if_sandbox_gone(results)
        return results

    # ------------------------------------------------------------ ports and snapshots
    async def tunnels(self) -> dict[int, Tunnel]:
        with translate(sandbox_id=self.id):
            found = await self.sandbox.tunnels.aio()
        return {port: _tunnel(port, t) for port, t in found.items()}

    async def snapshot(self, *, labels: Mapping[str, str], ttl: float | None = None) -> SnapshotInfo:
        """``snapshot_filesystem()``: an Image that expires after ``ttl`` (Modal keeps no labels on it)."""
        now = dt.datetime.now(dt.UTC)
        with translate(sandbox_id=self.id):
            image = await self.sandbox.snapshot_filesystem.aio(ttl=None if ttl is None else max(1, math.ceil(ttl)))
        return SnapshotInfo(
            id=image.object_id,
            provider=PROVIDER,
            created_at=now,
            expires_at=None if ttl is None else now + dt.timedelta(seconds=ttl),
            labels=dict(labels),
        )


def _image(spec: SandboxSpec, client: modal.Client) -> Any:
    if spec.snapshot is not None:
        if spec.image is not None:
            raise SandboxError(
                ErrorCode.INVALID_ARGUMENT,
                "give either image= or snapshot=, not both: a snapshot brings its own filesystem",
                provider=PROVIDER,
            )
        return modal.Image.from_id(spec.snapshot, client=client)
    return modal.Image.from_registry(spec.image) if spec.image else modal.Image.debian_slim()


def _tunnel(port: int, tunnel: Any) -> Tunnel:
    """Modal's tunnel as sandboxkit's: the TLS endpoint, or plain HTTP where it is loopback (the emulator)."""
    try:
        loopback = ipaddress.ip_address(tunnel.host).is_loopback
    except ValueError:
        loopback = False
    scheme = "http" if loopback else "https"
    default = 80 if loopback else 443
    url = f"{scheme}://{tunnel.host}" + ("" if tunnel.port == default else f":{tunnel.port}")
    return Tunnel(port=port, url=url, host=tunnel.host, host_port=tunnel.port)


async def _hydrate(obj: Any, client: modal.Client, code: ErrorCode, missing: str) -> Any:
    """Look a named Modal object up now, so a missing one fails with ``code`` before any sandbox exists."""
    try:
        with translate(op=Op.CREATE):
            await obj.hydrate.aio(client=client)
    except SandboxError as exc:
        if exc.code != ErrorCode.SANDBOX_CREATION_FAILED:
            raise
        raise SandboxError(code, f"{missing} (Modal said: {exc.message})", provider=PROVIDER) from None
    return obj


def _raise_if_sandbox_gone(results: Sequence[object]) -> None:
    """A batch on a sandbox that is gone fails as a whole, not file by file."""
    for result in results:
        if isinstance(result, SandboxError) and result.code == ErrorCode.SANDBOX_NOT_FOUND:
            raise result


async def _send_stdin(process: Any, data: bytes | None) -> None:
    """Write all of stdin and close it; without data, close it at once (EOF)."""
    view = memoryview(data or b"")
    while True:
        chunk, view = view[:STDIN_CHUNK], view[STDIN_CHUNK:]
        if chunk:
            process.stdin.write(bytes(chunk))
        if not view:
            process.stdin.write_eof()
        await process.stdin.drain.aio()
        if not view:
            return


__all__ = ["ModalOptions", "ModalProvider", "ModalSandbox", "map_error"]
