"""The emulator's state: apps, sandboxes (each a Docker sandbox), their processes and timers."""

from __future__ import annotations

import asyncio
import logging
import random
import string
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from grpclib import GRPCError, Status
from modal_proto import api_pb2

from sandboxkit import AsyncSandbox, ErrorCode, SandboxError
from sandboxkit_modal.emulator._images import ImageStore
from sandboxkit_modal.emulator._process import Command, Process
from sandboxkit_modal.emulator._stores import Stores

log = logging.getLogger("sandboxkit_modal.emulator")
GS = api_pb2.GenericResult

#: Docker provider app every emulated sandbox lives in.
DOCKER_APP = "modal-emulator"
#: Tag prefix that carries sandboxkit's bookkeeping labels (see the Modal provider).
LABEL_TAG = "sandboxkit.label."
#: GPU types Modal accepts (case-insensitive); anything else is INVALID_ARGUMENT, as on Modal.
GPU_TYPES = frozenset(
    {"ANY", "T4", "L4", "A10", "A10G", "L40S", "A100", "A100-40GB", "A100-80GB", "RTX-PRO-6000"}
    | {"H100", "H100!", "H200", "B200", "B200+"}
)
#: Seconds the Docker container outlives the emulator's own lifetime timer (which decides the result).
LIFETIME_SLACK = 10
#: How often a sandbox checks that its container still runs.
WATCH_INTERVAL = 5.0
#: How long a finished process stays readable.
PROCESS_RETENTION = 300.0
_BASE62 = string.ascii_letters + string.digits


def v1_sandbox_id() -> str:
    """``sb-`` and 22 base62 characters: the shape the modal client routes to the V1 RPCs."""
    return "sb-" + "".join(random.choices(_BASE62, k=22))


def v2_sandbox_id() -> str:
    """Any other shape routes to the V2 RPCs; Modal's real V2 ids are ULIDs."""
    return "sb-" + uuid.uuid4().hex.upper()[:26]


def grpc_error(exc: SandboxError) -> GRPCError:
    """The gRPC status a Docker-side failure becomes (no retryable statuses for permanent errors)."""
    status = {
        ErrorCode.INVALID_ARGUMENT: Status.INVALID_ARGUMENT,
        ErrorCode.ALREADY_EXISTS: Status.ALREADY_EXISTS,
        ErrorCode.SANDBOX_NOT_FOUND: Status.NOT_FOUND,
        ErrorCode.VOLUME_ERROR: Status.NOT_FOUND,
        ErrorCode.RESOURCE_LIMIT_EXCEEDED: Status.RESOURCE_EXHAUSTED,
        ErrorCode.CAPABILITY_NOT_SUPPORTED: Status.UNIMPLEMENTED,
        ErrorCode.PROVIDER_UNAVAILABLE: Status.UNAVAILABLE,
    }.get(exc.code, Status.FAILED_PRECONDITION)
    return GRPCError(status, f"[{exc.code.value}] {exc.message}")


@dataclass
class App:
    id: str
    name: str


@dataclass
class Secret:
    """A secret id handed to a client: a named one from the local store, or inline values."""

    name: str | None = None
    env: dict[str, str] = field(default_factory=dict, repr=False)


class EmuSandbox:
    """One Modal sandbox: its definition, its Docker sandbox, its processes and its result."""

    def __init__(
        self,
        backend: Backend,
        *,
        app: App,
        definition: api_pb2.Sandbox,
        tags: Mapping[str, str],
        v2: bool,
        env: Mapping[str, str],
    ) -> None:
        self.backend = backend
        self.id = v2_sandbox_id() if v2 else v1_sandbox_id()
        self.task_id = f"ta-{uuid.uuid4().hex[:22]}" + ("V" if v2 else "")
        self.app = app
        self.definition = definition
        self.name = definition.name or None
        self.tags = dict(tags)
        self.v2 = v2
        self.env = dict(env)
        self.created_at = time.time()
        self.box: AsyncSandbox | None = None
        self.result: api_pb2.GenericResult | None = None
        self.changed = asyncio.Event()
        self.execs: dict[str, Process] = {}
        self.entry: Process | None = None
        self.busy = 0
        self.last_active = time.monotonic()
        self._timers: list[asyncio.TimerHandle] = []
        self._watchers: list[asyncio.Task[None]] = []
        self._closing: asyncio.Task[None] | None = None

    # ------------------------------------------------------------ life
    def touch(self) -> None:
        self.last_active = time.monotonic()

    def running(self) -> bool:
        return self.result is None

    def start_timers(self) -> None:
        loop = asyncio.get_running_loop()
        lifetime = self.definition.timeout_secs or 300
        self._timers.append(loop.call_later(lifetime, self.finish, GS.GENERIC_STATUS_TIMEOUT, "Sandbox timed out"))
        if self.definition.idle_timeout_secs:
            self._watchers.append(asyncio.ensure_future(self._idle_watch(self.definition.idle_timeout_secs)))
        self._watchers.append(asyncio.ensure_future(self._container_watch()))

    async def _idle_watch(self, idle: int) -> None:
        while self.running():
            await asyncio.sleep(max(0.2, self.last_active + idle - time.monotonic()))
            if self.busy == 0 and time.monotonic() - self.last_active >= idle:
                self.finish(GS.GENERIC_STATUS_TIMEOUT, f"Sandbox was idle for {idle}s")

    async def _container_watch(self) -> None:
        while self.running() and self.box is not None:
            await asyncio.sleep(WATCH_INTERVAL)
            if not self.running():
                return
            try:
                state = await self.box.handle.status()
            except SandboxError:
                continue
            if state.value not in ("running", "pending") and self.running():
                self.lost(f"the sandbox's container stopped ({state.value})")

    def lost(self, message: str) -> None:
        self.finish(GS.GENERIC_STATUS_FAILURE, message, exitcode=137)

    def finish(self, status: int, message: str = "", exitcode: int = 0) -> None:
        """Record the result (first one wins) and tear the container down in the background."""
        if self.result is not None:
            return
        self.result = GS(status=status, exception=message, exitcode=exitcode)  # type: ignore[arg-type]
        self.changed.set()
        for timer in self._timers:
            timer.cancel()
        for watcher in self._watchers:
            if watcher is not asyncio.current_task():
                watcher.cancel()
        log.info("sandbox %s finished: %s %s", self.id, GS.GenericStatus.Name(status), message)  # type: ignore[arg-type]
        self._closing = asyncio.ensure_future(self._close())

    async def _close(self) -> None:
        box, self.box = self.box, None
        if box is not None:
            try:
                await box.close()
            except SandboxError as exc:
                log.warning("closing the Docker sandbox of %s failed: %s", self.id, exc)
        # output of its commands stays readable for a while, then is dropped
        asyncio.get_running_loop().call_later(PROCESS_RETENTION, self.execs.clear)

    async def drain(self) -> None:
        """Wait for background work (the container teardown) to end."""
        if self._closing is not None:
            await asyncio.gather(self._closing, return_exceptions=True)

    # ------------------------------------------------------------ processes
    def require_box(self) -> AsyncSandbox:
        if self.result is not None or self.box is None:
            raise GRPCError(Status.NOT_FOUND, f"Task {self.task_id} has finished")
        return self.box

    def process(self, exec_id: str) -> Process:
        found = self.execs.get(exec_id)
        if found is None:
            raise GRPCError(Status.NOT_FOUND, f"exec {exec_id} not found")
        return found

    def add_process(self, exec_id: str, process: Process) -> None:
        now = time.monotonic()
        for key, old in list(self.execs.items()):
            if old.finished_at is not None and now - old.finished_at > PROCESS_RETENTION:
                del self.execs[key]
        self.execs[exec_id] = process
        self.touch()

    def start_entrypoint(self, box: AsyncSandbox, args: Sequence[str]) -> None:
        def ended(command: Command) -> None:
            code = command.exit_code or 0
            status = GS.GENERIC_STATUS_SUCCESS if code == 0 else GS.GENERIC_STATUS_FAILURE
            self.finish(status, "" if code == 0 else f"entrypoint exited with code {code}", exitcode=code)

        self.entry = Command(
            self,
            box,
            args,
            env=self.env,
            workdir=None,
            timeout=None,
            fifo_path=f"/tmp/.modal-emulator-stdin-{self.task_id}",
            on_exit=ended,
            defer=False,
        )

    # ------------------------------------------------------------ tunnels and snapshots
    async def tunnels(self) -> list[api_pb2.TunnelData]:
        """Every open port as a tunnel: a port published on 127.0.0.1 (plain TCP: the emulator has no TLS)."""
        box = self.require_box()
        try:
            published = await box.tunnels() if self.definition.open_ports.ports else {}
        except SandboxError as exc:
            raise grpc_error(exc) from None
        out = []
        for spec in self.definition.open_ports.ports:
            t = published.get(spec.port)
            if t is None:
                continue
            out.append(
                api_pb2.TunnelData(
                    container_port=spec.port,
                    host=t.host,
                    port=t.host_port,
                    unencrypted_host=t.host if spec.unencrypted else "",
                    unencrypted_port=t.host_port if spec.unencrypted else 0,
                )
            )
        return out

    async def snapshot(self, *, ttl: float | None) -> str:
        """Snapshot the container's filesystem through the Docker provider; returns the image id."""
        box = self.require_box()
        self.touch()
        try:
            snap = await box.snapshot(ttl=ttl)
        except SandboxError as exc:
            raise grpc_error(exc) from None
        base = self.backend.images.get(self.definition.image_id)
        return self.backend.images.add_snapshot(snap.id, base)

    # ------------------------------------------------------------ reports
    def info(self) -> api_pb2.SandboxInfo:
        return api_pb2.SandboxInfo(
            id=self.id,
            created_at=self.created_at,
            app_id=self.app.id,
            name=self.name or "",
            tags=[api_pb2.SandboxTag(tag_name=k, tag_value=v) for k, v in self.tags.items()],
            task_info=api_pb2.TaskInfo(id=self.task_id, result=self.result, sandbox_id=self.id),
            metadata=self.metadata(),
            timeout_secs=self.definition.timeout_secs,
            idle_timeout_secs=self.definition.idle_timeout_secs,
        )

    def metadata(self) -> api_pb2.SandboxHandleMetadata:
        meta = api_pb2.SandboxHandleMetadata(app_id=self.app.id)
        if self.result is not None:
            meta.result.CopyFrom(self.result)
        return meta


class Backend:
    """Everything the servicers share. Sandboxes are created through sandboxkit's Docker provider."""

    def __init__(self, *, images: ImageStore, stores: Stores, gpu_mode: str) -> None:
        self.images = images
        self.stores = stores
        self.gpu_mode = gpu_mode
        self.apps: dict[str, App] = {}
        self.sandboxes: dict[str, EmuSandbox] = {}
        self.by_task: dict[str, EmuSandbox] = {}
        self.secrets: dict[str, Secret] = {}
        self.router_url = ""
        self._create_lock = asyncio.Lock()

    # ------------------------------------------------------------ lookups
    def app(self, name: str, *, create: bool) -> App:
        if name not in self.apps:
            if not create:
                raise GRPCError(Status.NOT_FOUND, f"App '{name}' not found")
            self.apps[name] = App(id=f"ap-{uuid.uuid4().hex[:22]}", name=name)
        return self.apps[name]

    def app_by_id(self, app_id: str) -> App:
        for app in self.apps.values():
            if app.id == app_id:
                return app
        raise GRPCError(Status.NOT_FOUND, f"App {app_id} not found")

    def sandbox(self, sandbox_id: str) -> EmuSandbox:
        found = self.sandboxes.get(sandbox_id)
        if found is None:
            raise GRPCError(Status.NOT_FOUND, f"Sandbox {sandbox_id} not found")
        return found

    def task(self, task_id: str) -> EmuSandbox:
        found = self.by_task.get(task_id)
        if found is None:
            raise GRPCError(Status.NOT_FOUND, f"Task {task_id} not found")
        return found

    def resolve_secrets(
        self, secret_ids: Sequence[str], sources: Sequence[api_pb2.SecretSource]
    ) -> tuple[list[str], dict[str, str]]:
        """(names of stored secrets, values of inline ones) that a create or an exec references."""
        names: list[str] = []
        env: dict[str, str] = {}
        for secret_id in [*secret_ids, *(s.secret_id for s in sources if s.secret_id)]:
            secret = self.secrets.get(secret_id)
            if secret is None:
                raise GRPCError(Status.NOT_FOUND, f"Secret {secret_id} not found")
            if secret.name:
                names.append(secret.name)
            else:
                env.update(secret.env)
        for source in sources:
            env.update(dict(source.env.contents))
        return names, env

    def exec_env(self, secret_ids: Sequence[str], sources: Sequence[api_pb2.SecretSource]) -> dict[str, str]:
        """Every variable an exec's secrets add (stored ones read from the local store)."""
        names, env = self.resolve_secrets(secret_ids, sources)
        values: dict[str, str] = {}
        for name in names:
            values.update(self.stores.secret_values(name))
        return {**values, **env}

    # ------------------------------------------------------------ create
    async def create(
        self,
        *,
        app_id: str,
        definition: api_pb2.Sandbox,
        tags: Mapping[str, str],
        secret_sources: Sequence[api_pb2.SecretSource],
        v2: bool,
    ) -> EmuSandbox:
        app = self.app_by_id(app_id)
        _refuse_unsupported(definition)
        gpu = _gpu(definition.resources.gpu_config)
        named, env = self.resolve_secrets(definition.secret_ids, secret_sources)
        async with self._create_lock:  # names are unique per app among running sandboxes
            if definition.name and any(
                s.name == definition.name and s.app.id == app_id and s.running() for s in self.sandboxes.values()
            ):
                raise GRPCError(
                    Status.ALREADY_EXISTS, f"Sandbox with name '{definition.name}' already exists in this App"
                )
            sandbox = EmuSandbox(self, app=app, definition=definition, tags=tags, v2=v2, env=env)
            self.sandboxes[sandbox.id] = sandbox
            self.by_task[sandbox.task_id] = sandbox
        try:
            sandbox.box = await self._docker_sandbox(sandbox, gpu=gpu, secrets=named)
        except SandboxError as exc:
            sandbox.finish(GS.GENERIC_STATUS_FAILURE, exc.message)
            raise grpc_error(exc) from None
        except BaseException:
            sandbox.finish(GS.GENERIC_STATUS_FAILURE, "creation was interrupted")
            raise
        sandbox.start_timers()
        if definition.entrypoint_args:
            sandbox.start_entrypoint(sandbox.box, list(definition.entrypoint_args))
        log.info("sandbox %s (%s) created in app %s", sandbox.id, "V2" if v2 else "V1", app.name)
        return sandbox

    async def _docker_sandbox(self, sandbox: EmuSandbox, *, gpu: str | None, secrets: list[str]) -> AsyncSandbox:
        d = sandbox.definition
        image = self.images.get(d.image_id)
        resources = d.resources
        milli_cpu = resources.milli_cpu_max or resources.milli_cpu
        memory = resources.memory_mb_max or resources.memory_mb
        blocked = d.block_network or d.network_access.network_access_type == api_pb2.NetworkAccess.BLOCKED
        labels = {k[len(LABEL_TAG) :]: v for k, v in sandbox.tags.items() if k.startswith(LABEL_TAG)}
        options: dict[str, Any] = {
            **({"snapshot": image.snapshot} if image.snapshot else {"image": image.local}),
            "ports": [p.port for p in d.open_ports.ports],
            "timeout": (d.timeout_secs or 300) + LIFETIME_SLACK,
            "workdir": d.workdir or image.workdir,
            "env": image.env,
            "block_network": blocked,
            "app": DOCKER_APP,
            "tags": {"modal-sandbox-id": sandbox.id, "modal-app": sandbox.app.name},
            "labels": labels,
            "provider_options": {"pull": "never"},
        }
        if gpu:
            options["gpu"] = gpu
            options["provider_options"]["gpu_mode"] = self.gpu_mode
        if milli_cpu:
            options["cpu"] = milli_cpu / 1000
        if memory:
            options["memory_mib"] = memory
        if d.volume_mounts:
            options["volumes"] = {m.mount_path: self.stores.volume_name(m.volume_id) for m in d.volume_mounts}
        if secrets:
            options["secrets"] = secrets
        if d.network_access.network_access_type == api_pb2.NetworkAccess.ALLOWLIST:
            # the Docker provider's egress enforces it; SANDBOXKIT_DOCKER_EGRESS_NETWORK / _CA apply
            options["network"] = network_policy(d.network_access)
        return await AsyncSandbox.create(provider="docker", **options)

    async def shutdown(self) -> None:
        """Terminate every running sandbox and wait for the containers to go."""
        for sandbox in list(self.sandboxes.values()):
            sandbox.finish(GS.GENERIC_STATUS_TERMINATED, "the Modal emulator shut down")
        await asyncio.gather(*(s.drain() for s in self.sandboxes.values()), return_exceptions=True)


def network_policy(access: api_pb2.NetworkAccess) -> dict[str, list[str]]:
    """A Modal outbound allowlist as the fields of a sandboxkit NetworkPolicy (validated by the facade)."""
    if "*" in access.allowed_domains:
        raise GRPCError(Status.UNIMPLEMENTED, "the Modal emulator does not support the '*' domain allowlist entry")
    ipv6 = [c for c in access.allowed_cidrs if ":" in c]
    if ipv6:
        raise GRPCError(
            Status.INVALID_ARGUMENT,
            f"outbound_cidr_allowlist {', '.join(ipv6)}: the Modal emulator's sandboxes have no IPv6; "
            "allow the IPv4 range (or the host's name in outbound_domain_allowlist) instead",
        )
    return {"allow_domains": list(access.allowed_domains), "allow_cidrs": list(access.allowed_cidrs)}


def _gpu(config: api_pb2.GPUConfig) -> str | None:
    kind = config.gpu_type.upper()
    if not kind:
        return None
    if kind not in GPU_TYPES:
        raise GRPCError(
            Status.INVALID_ARGUMENT,
            f"GPU type {config.gpu_type!r} is not valid; use one of {', '.join(sorted(GPU_TYPES))}",
        )
    count = config.count or 1
    return kind if count == 1 else f"{kind}:{count}"


def _refuse_unsupported(d: api_pb2.Sandbox) -> None:
    """UNIMPLEMENTED for features the emulator cannot provide, rather than silently ignoring them."""
    unsupported = [
        name
        for name, present in (
            ("network file systems", len(d.nfs_mounts) > 0),
            ("cloud bucket mounts", len(d.cloud_bucket_mounts) > 0 or len(d.s3_mounts) > 0),
            ("outbound header policies", d.HasField("experimental_outbound_policy") or d.HasField("outbound_policy")),
            ("proxies", bool(d.proxy_id)),
            ("readiness probes", d.HasField("readiness_probe")),
            ("snapshots", d.enable_snapshot),
            ("PTYs", d.HasField("pty_info") and d.pty_info.enabled),
            ("custom domains", bool(d.custom_domain)),
            ("i6pn networking", d.i6pn_enabled),
            ("mounts", len(d.mount_ids) > 0),
        )
        if present
    ]
    if unsupported:
        raise GRPCError(Status.UNIMPLEMENTED, f"the Modal emulator does not support {', '.join(unsupported)}")
