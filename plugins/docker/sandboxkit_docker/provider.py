"""DockerProvider: sandboxes as local (or DOCKER_HOST) containers, through docker-py."""

from __future__ import annotations

import builtins
import dataclasses
import datetime as dt
import hashlib
import math
import os
import re
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar, Literal, TypeVar

import anyio
import docker
import docker.errors
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from sandboxkit import Capability
from sandboxkit.secrets import resolve_secrets
from sandboxkit.spi import (
    DEFAULT_DISK_MIB,
    ErrorCode,
    ExecExit,
    ExecRequest,
    InSandboxProcesses,
    NetworkEvent,
    NetworkPolicy,
    OutputCallback,
    Provider,
    SandboxError,
    SandboxHandle,
    SandboxInfo,
    SandboxSpec,
    SandboxState,
    SnapshotInfo,
    StaleSandbox,
    SupervisedProcesses,
    Tunnel,
    VolumeInfo,
    default_cpu,
    default_memory_mib,
    file_error,
)
from sandboxkit_docker import (
    _archive,
    _diskcap,
    _dockerpy,
    _egress,
    _gc,
    _gpu,
    _kernelfs,
    _labels,
    _lifetime,
    _limits,
    _security,
    _snapshots,
    _threads,
    _warden,
)
from sandboxkit_docker._errors import NO_DISK_QUOTA, PROVIDER, map_error, translate
from sandboxkit_docker._exec import ExecEngine
from sandboxkit_docker._fastexec import FastExec
from sandboxkit_docker._oom import OomCounter, PidsCounter
from sandboxkit_docker.images import DEFAULT_IMAGE

T = TypeVar("T")

#: Seconds to wait for the engine before reporting PROVIDER_UNAVAILABLE.
CONNECT_TIMEOUT = 2.0
#: Read timeout for ordinary API calls once connected (large archives take a while).
API_TIMEOUT = 300.0
#: A running command looks at its container this long after it started, then this often: under
#: gVisor a command's stream can stay open after the sandbox's PID 1 exited (its lifetime ended).
STOP_WATCH_AFTER = 2.0
STOP_WATCH_EVERY = 3.0

_STATES = {
    "created": SandboxState.PENDING,
    "running": SandboxState.RUNNING,
    "restarting": SandboxState.PENDING,
    "paused": SandboxState.STOPPED,
    "exited": SandboxState.STOPPED,
    "removing": SandboxState.TERMINATED,
    "dead": SandboxState.FAILED,
}
_VOLUME_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


class DockerOptions(BaseModel):
    """Docker-only knobs, passed as ``provider_options={...}``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: when to pull the image: never (offline), when missing locally, or always
    pull: Literal["never", "missing", "always"] = "missing"
    #: the user commands run as by default (name or uid[:gid]); None keeps the image's
    user: str | None = None
    #: most processes the sandbox may run at once (contains fork bombs)
    pids_limit: int = Field(4096, gt=16)
    #: the container's hostname
    hostname: str | None = None
    #: how ``gpu=`` is served: real GPUs, a simulation, or refused; None reads $SANDBOXKIT_DOCKER_GPU (default auto)
    gpu_mode: Literal["auto", "simulate", "off"] | None = None
    #: give a cpu-limited sandbox a cpuset of ceil(cpu) CPUs, so ``nproc`` reports its limit
    pin_cpus: bool = True
    #: cap on the sandbox's writable layer, MiB: a driver quota (overlay2 on xfs+pquota, zfs), else a capped
    #: filesystem the warden mounts under the layer (overlay2); None: 10 GiB where either holds, else no cap
    disk_mib: int | None = Field(None, gt=0)
    #: largest file a process may write, MiB (``ulimit -f``; works on every host)
    max_file_mib: int | None = Field(None, gt=0)
    #: capabilities added to the default allow-list (CHOWN DAC_OVERRIDE FOWNER KILL SETGID SETUID), e.g. NET_RAW
    cap_add: tuple[str, ...] = ()
    #: capabilities removed from the default allow-list, e.g. DAC_OVERRIDE
    cap_drop: tuple[str, ...] = ()
    #: setuid binaries and file capabilities cannot raise privileges (``no-new-privileges``)
    no_new_privileges: bool = True
    #: OCI runtime the engine runs the sandbox with, e.g. "runsc" (gVisor); None reads $SANDBOXKIT_DOCKER_RUNTIME,
    #: else the engine's default
    runtime: str | None = Field(None, min_length=1)

    @field_validator("cap_add", "cap_drop", mode="before")
    @classmethod
    def _caps(cls, v: Any) -> tuple[str, ...]:
        if isinstance(v, str) or not isinstance(v, Sequence):
            raise ValueError(f"give a list of capability names like ['NET_RAW'], got {v!r}")
        return _security.normalize_caps(v)

    @model_validator(mode="after")
    def _caps_disjoint(self) -> DockerOptions:
        both = set(self.cap_add) & set(self.cap_drop)
        if both:
            raise ValueError(f"{', '.join(sorted(both))} is in both cap_add and cap_drop; name it in one")
        return self

    #: the Docker network a ``network=`` sandbox's egress reaches out through; None reads
    #: $SANDBOXKIT_DOCKER_EGRESS_NETWORK, else the default bridge
    egress_network: str | None = None


def container_name(app: str, name: str) -> str:
    """Docker container name for a named sandbox: readable, and unique per (app, name)."""
    digest = hashlib.sha256(f"{app}\x00{name}".encode()).hexdigest()[:8]
    return f"{app}.{name}.{digest}"


class DockerProvider(Provider):
    """Runs each sandbox as a container whose PID 1 ends it on time by itself (see ``_lifetime``)."""

    name: ClassVar[str] = PROVIDER
    capabilities: ClassVar[frozenset[Capability]] = frozenset(
        {
            Capability.GPU,  # current only with real passthrough or SANDBOXKIT_DOCKER_GPU=simulate
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
            Capability.USER,
            Capability.RECONNECT,
            Capability.PORTS,
            Capability.SNAPSHOTS,
            Capability.PROCESSES,  # an in-sandbox supervisor (needs python3 in the image)
            Capability.PTY,
            Capability.NETWORK_POLICY,  # see _egress
            Capability.CREDENTIAL_INJECTION,
        }
    )
    options_type: ClassVar[type[BaseModel]] = DockerOptions

    def __init__(self, auth: Mapping[str, str] | None = None) -> None:
        super().__init__(auth)
        self._client: docker.DockerClient | None = None
        self._info: dict[str, Any] | None = None
        self._quota_refused = False
        self._mounts: bool | None = None  # the warden can mount capped layers on this engine (tried once)
        self._disk_caps: _diskcap.DiskCaps | None = None  # the channel to the warden's disk daemon
        self._lock = threading.Lock()
        self._activity: _warden.Activity | None = None

    def version(self) -> str:
        return self.distribution_version("sandboxkit-docker")

    # ------------------------------------------------------------ plumbing
    def client(self) -> docker.DockerClient:
        """The docker-py client, created on first use (the engine must answer within 2 s)."""
        with self._lock:
            if self._client is None:
                with translate():
                    client = docker.from_env(timeout=int(CONNECT_TIMEOUT), max_pool_size=64)
                client.api.timeout = API_TIMEOUT
                self._client = client
            return self._client

    async def call(
        self,
        func: Callable[..., T],
        *args: Any,
        sandbox_id: str | None = None,
        creating: bool = False,
        volume: str | None = None,
        **kw: Any,
    ) -> T:
        """Run a blocking docker-py call off the event loop, translating its errors."""

        def run() -> T:
            with translate(sandbox_id=sandbox_id, creating=creating, volume=volume):
                return func(*args, **kw)

        return await _threads.run_sync(run)

    async def engine_info(self) -> dict[str, Any]:
        """``docker info`` of the engine (CPU count, runtimes), fetched once."""
        if self._info is None:
            client = await _threads.run_sync(self.client)
            info: dict[str, Any] = await self.call(client.info)
            self._info = info
        return self._info

    async def current_capabilities(self) -> frozenset[Capability]:
        """The declared set, without GPU unless the engine has the NVIDIA runtime (or, on a local
        engine, the host has NVIDIA device nodes) or ``$SANDBOXKIT_DOCKER_GPU=simulate``."""
        declared = type(self).capabilities
        try:
            mode = _gpu.resolve_mode(None)
        except SandboxError:  # a misspelled mode: keep GPU so that create reports the setting to fix
            return declared
        if mode == "simulate":
            return declared
        if mode == "auto":
            runtimes = (await self.engine_info()).get("Runtimes") or {}
            local = await _threads.run_sync(self.local_engine)
            if _gpu.host_has_gpus(frozenset(runtimes), local):
                return declared
        return declared - {Capability.GPU}

    def capability_hint(self, capability: Capability) -> str:
        if capability is Capability.GPU:
            return _gpu.HINT
        return ""

    def local_engine(self) -> bool:
        """True when the engine listens on a local unix socket (host files describe its containers)."""
        return str(self.client().api.base_url).startswith("http+docker://localhost")

    def activity(self) -> _warden.Activity:
        """Where handles report command activity for the warden's idle timeouts."""
        api = self.client().api
        with self._lock:
            if self._activity is None:
                self._activity = _warden.Activity(api)
            return self._activity

    def disk_caps(self) -> _diskcap.DiskCaps:
        """This provider's channel to the warden's disk daemon (opened on first use)."""
        api = self.client().api
        with self._lock:
            if self._disk_caps is None:
                self._disk_caps = _diskcap.DiskCaps(api)
            return self._disk_caps

    async def aclose(self) -> None:
        if self._disk_caps is not None:
            await _threads.run_sync(self._disk_caps.close)
            self._disk_caps = None
        if self._activity is not None:
            await _threads.run_sync(self._activity.flush)
            self._activity = None
        if self._client is not None:
            await _threads.run_sync(self._client.close)
            self._client = None

    # ------------------------------------------------------------ create
    async def create(self, spec: SandboxSpec, options: BaseModel) -> DockerSandbox:
        assert isinstance(options, DockerOptions)
        client = await _threads.run_sync(self.client)
        image = spec.image or os.environ.get("SANDBOXKIT_DEFAULT_IMAGE") or DEFAULT_IMAGE
        explicit = spec.image is not None
        if spec.snapshot is not None:
            image = self._snapshot_image(spec)
        if options.pull == "always" and spec.snapshot is None:
            await self._ensure_image(client, image, options.pull, explicit=explicit)
        # everything that can refuse the spec runs before a container exists
        gpu = await self._gpu_plan(spec, options)
        secret_env = _resolve_secrets(spec.secrets)
        await self._check_volumes(client, spec.volumes)
        info = await self.engine_info()
        runtime = options.runtime or os.environ.get(_security.RUNTIME_ENV) or None
        if runtime is not None:
            _security.check_runtime(runtime, info.get("Runtimes") or {})
        await self.call(_warden.ensure, client.api, creating=True)  # enforces lifetimes from outside, mounts disk caps
        disk_mib, mount_disk = await self._disk_plan(client, options.disk_mib, info)
        if spec.memory_mib is None:  # the default cap, reported like an asked-for one (OOM, env, label)
            spec = spec.model_copy(update={"memory_mib": default_memory_mib(int(info.get("MemTotal") or 0))})
        cpuset = await self._cpuset(spec.cpu) if spec.cpu is not None and options.pin_cpus else None

        gpu_label = None if gpu is None else (gpu.spec, gpu.simulated)
        labels = _labels.for_sandbox(spec, time.time(), cpuset=cpuset, gpu=gpu_label)
        env = _limits.limit_env(
            spec, pids_limit=options.pids_limit, disk_mib=disk_mib, max_file_mib=options.max_file_mib
        )
        env.update(gpu.env() if gpu else {})
        env.update(spec.env)
        entrypoint, command = _lifetime.entrypoint(spec.timeout, spec.idle_timeout)
        kwargs: dict[str, Any] = {
            "image": image,
            "entrypoint": entrypoint,
            "command": command,
            "init": True,
            "auto_remove": True,
            "detach": True,
            "labels": labels,
            "environment": env,
            "working_dir": spec.workdir,
            "hostname": options.hostname,
            "user": options.user,
            "volumes": {name: {"bind": path, "mode": "rw"} for path, name in spec.volumes.items()},
            **_limits.host_config(
                spec,
                pids_limit=options.pids_limit,
                cpuset=cpuset,
                fallback_cpu=default_cpu(int(info.get("NCPU") or 1)),
                disk_mib=None if mount_disk else disk_mib,
                max_file_mib=options.max_file_mib,
            ),
            **_security.container_kwargs(options.cap_add, options.cap_drop, options.no_new_privileges, runtime),
            **(gpu.kwargs if gpu else {}),
        }
        if runtime == "runsc" and "/tmp" not in spec.volumes:
            kwargs["mounts"] = [_security.runsc_tmp(disk_mib)]
            labels[_labels.TMP_VOLUME] = "1"
        if spec.name:
            kwargs["name"] = container_name(spec.app, spec.name)
        if spec.block_network:
            kwargs["network_mode"] = "none"
        if spec.ports:  # loopback only, ephemeral host ports; `docker ps` shows them with the labels
            kwargs["ports"] = {f"{port}/tcp": ("127.0.0.1",) for port in spec.ports}
        policy = None if spec.network is None else _egress.resolve(spec.network)
        egress = None if policy is None else await _egress.Egress.prepare(self, kwargs, options.egress_network)
        try:
            try:
                container = await self._create_container(client, kwargs, spec)
            except SandboxError as exc:
                if (
                    options.disk_mib is None
                    and "storage_opt" in kwargs
                    and exc.code == ErrorCode.CAPABILITY_NOT_SUPPORTED
                ):
                    self._quota_refused = True  # xfs without pquota: this engine gets no default disk cap
                    del kwargs["storage_opt"], env["SANDBOXKIT_DISK_MIB"]
                # the image is looked at only when it is missing: one round trip less
                elif not isinstance(exc.__cause__, docker.errors.ImageNotFound) or options.pull == "always":
                    raise
                else:
                    if spec.snapshot is not None:
                        raise SandboxError(
                            ErrorCode.INVALID_ARGUMENT,
                            f"there is no snapshot {spec.snapshot!r} (deleted, reaped by gc, or from another engine); "
                            "`sandboxkit snapshot ls` lists them",
                            provider=PROVIDER,
                        ) from None
                    await self._ensure_image(client, image, options.pull, explicit=explicit)  # a clear error, or a pull
                container = await self._create_container(client, kwargs, spec)
            try:
                if mount_disk and disk_mib is not None:
                    caps = self.disk_caps()
                    await self.call(caps.apply, container.id, disk_mib, info["DockerRootDir"], creating=True)
                if gpu is not None and gpu.files():
                    await self.call(
                        client.api.put_archive, container.id, "/", _archive.pack(gpu.files(), mode=0o755), creating=True
                    )
                await self.call(container.start, sandbox_id=container.id, creating=True)
                if egress is not None and policy is not None:
                    await egress.attach(container.id, policy)
            except BaseException:
                with anyio.CancelScope(shield=True):
                    await self._remove(client, container.id)
                raise
        except BaseException:
            if egress is not None:
                with anyio.CancelScope(shield=True):
                    await egress.remove()
            raise
        sandbox = DockerSandbox(self, container, labels, secret_env=secret_env, fresh=True)
        sandbox.network_policy = spec.network
        return sandbox

    async def _disk_plan(
        self, client: docker.DockerClient, asked: int | None, info: Mapping[str, Any]
    ) -> tuple[int | None, bool]:
        """The disk cap to set (``asked``, else the default) and whether the warden mounts it, or
        (None, False) where neither driver quotas nor the warden's mounts can hold one."""
        problem = _limits.disk_quota_problem(dict(info))
        if problem is None and not self._quota_refused:
            return asked or DEFAULT_DISK_MIB, False
        if self._mounts is None and _warden.enabled():
            self._mounts = await _threads.run_sync(self.disk_caps().available, dict(info))
        if self._mounts and _warden.enabled():
            return asked or DEFAULT_DISK_MIB, True
        if asked is not None:
            raise SandboxError(
                ErrorCode.CAPABILITY_NOT_SUPPORTED,
                NO_DISK_QUOTA.format(detail=problem or "its xfs data-root is not mounted with pquota"),
                provider=PROVIDER,
            )
        return None, False

    async def _gpu_plan(self, spec: SandboxSpec, options: DockerOptions) -> _gpu.GpuPlan | None:
        if spec.gpu is None:
            return None
        mode = _gpu.resolve_mode(options.gpu_mode)
        runtimes: frozenset[str] = frozenset()
        if mode == "auto":
            runtimes = frozenset((await self.engine_info()).get("Runtimes") or {})
        return _gpu.plan(spec.gpu_type or "", spec.gpu_count, mode, runtimes, self.local_engine())

    async def _check_volumes(self, client: docker.DockerClient, volumes: Mapping[str, str]) -> None:
        mounted: dict[str, str] = {}
        for path, name in volumes.items():
            if name in mounted:
                raise SandboxError(
                    ErrorCode.INVALID_ARGUMENT,
                    f"volume {name!r} is mounted at both {mounted[name]} and {path}; mount each volume once",
                    provider=PROVIDER,
                )
            mounted[name] = path
            await self.call(client.api.inspect_volume, name, volume=name)

    async def _cpuset(self, cpu: float) -> str | None:
        ncpu = int((await self.engine_info()).get("NCPU") or 0)
        if math.ceil(cpu) >= ncpu:
            return None
        running = await self._containers({}, running=True)
        return _limits.choose_cpuset(cpu, ncpu, ((row.get("Labels") or {}).get(_labels.CPUSET, "") for row in running))

    async def _ensure_image(self, client: docker.DockerClient, image: str, pull: str, explicit: bool) -> None:
        try:
            if pull != "always":
                await self.call(client.images.get, image, creating=True)
                return
        except SandboxError as exc:
            if exc.code != ErrorCode.SANDBOX_CREATION_FAILED:
                raise
            if pull == "never" or not explicit:
                hint = (
                    "run `sandboxkit images bootstrap` to build it offline"
                    if not explicit
                    else "`docker pull` or `docker load` it, or omit image= to use the offline base image"
                )
                raise SandboxError(
                    ErrorCode.SANDBOX_CREATION_FAILED,
                    f"image {image!r} is not present locally; {hint}",
                    provider=PROVIDER,
                ) from None
        try:
            await self.call(client.images.pull, image, creating=True)
        except SandboxError as exc:
            raise SandboxError(
                ErrorCode.SANDBOX_CREATION_FAILED,
                f"image {image!r} is not present locally and could not be pulled ({exc.message}); "
                "`docker load` it, or omit image= to use the offline base image from `sandboxkit images bootstrap`",
                provider=PROVIDER,
            ) from None

    async def _create_container(self, client: docker.DockerClient, kwargs: dict[str, Any], spec: SandboxSpec) -> Any:
        for attempt in range(2):
            try:
                return await self.call(_dockerpy.create_only, client, kwargs, creating=True)
            except SandboxError as exc:
                if exc.code != ErrorCode.ALREADY_EXISTS or attempt:
                    raise
                # the name is taken: by a live sandbox (a real conflict) or by one that already ended
                try:
                    existing = await self.call(client.containers.get, kwargs["name"])
                except SandboxError:
                    continue
                if existing.status == "running":
                    raise SandboxError(
                        ErrorCode.ALREADY_EXISTS,
                        f"a sandbox named {spec.name!r} is already running in app {spec.app!r}; "
                        "close it, or pick another name",
                        provider=PROVIDER,
                    ) from None
                await self._remove(client, existing.id)
        raise AssertionError("unreachable")

    async def _remove(self, client: docker.DockerClient, container_id: str) -> None:
        try:
            await self.call(client.api.remove_container, container_id, force=True, v=True, sandbox_id=container_id)
        except SandboxError as exc:
            if exc.code not in (ErrorCode.SANDBOX_NOT_FOUND,):
                raise

    # ------------------------------------------------------------ find
    async def from_id(self, sandbox_id: str) -> DockerSandbox:
        client = await _threads.run_sync(self.client)
        container = await self.call(client.containers.get, sandbox_id, sandbox_id=sandbox_id)
        labels = _labels.present(container.labels or {})
        if labels.get(_labels.MANAGED) != "1" or labels.get(_labels.PROVIDER) != PROVIDER:
            raise SandboxError(
                ErrorCode.SANDBOX_NOT_FOUND,
                f"{sandbox_id!r} is not a sandboxkit sandbox",
                provider=PROVIDER,
                sandbox_id=sandbox_id,
            )
        if container.status != "running":
            raise SandboxError(
                ErrorCode.SANDBOX_NOT_FOUND,
                f"sandbox {sandbox_id!r} is {container.status}; it was closed or its lifetime ended",
                provider=PROVIDER,
                sandbox_id=sandbox_id,
            )
        sandbox = DockerSandbox(self, container, labels)
        if sandbox.oom is not None:
            await sandbox.oom.prime()
        await sandbox.pids.prime()
        if sandbox.egress is not None:
            sandbox.network_policy = await sandbox.egress.policy()
        return sandbox

    async def from_name(self, app: str, name: str) -> DockerSandbox:
        found = await self._containers({_labels.APP: app, _labels.NAME: name}, running=True)
        if not found:
            raise SandboxError(
                ErrorCode.SANDBOX_NOT_FOUND, f"no running sandbox named {name!r} in app {app!r}", provider=PROVIDER
            )
        return await self.from_id(found[0]["Id"])

    async def _containers(self, labels: Mapping[str, str], running: bool) -> builtins.list[dict[str, Any]]:
        client = await _threads.run_sync(self.client)
        filters: dict[str, Any] = {
            "label": [
                f"{_labels.MANAGED}=1",
                f"{_labels.PROVIDER}={PROVIDER}",
                *(f"{k}={v}" for k, v in labels.items()),
            ]
        }
        if running:
            filters["status"] = "running"
        return await self.call(client.api.containers, all=True, filters=filters)

    async def list(
        self,
        *,
        app: str | None = None,
        tags: Mapping[str, str] | None = None,
        labels: Mapping[str, str] | None = None,
    ) -> builtins.list[SandboxInfo]:
        wanted = {f"{_labels.TAG}{k}": v for k, v in (tags or {}).items()}
        wanted.update({f"{_labels.USER}{k}": v for k, v in (labels or {}).items()})
        if app is not None:
            wanted[_labels.APP] = app
        rows = await self._containers(wanted, running=False)
        return [info for row in rows if (info := _info(row)).state in (SandboxState.RUNNING, SandboxState.PENDING)]

    # ------------------------------------------------------------ gc
    async def gc(
        self, *, dry_run: bool = False, labels: Mapping[str, str] | None = None
    ) -> builtins.list[StaleSandbox]:
        """Remove sandboxes past their lifetime, never started, stopped, or left by a dead local client."""
        client = await _threads.run_sync(self.client)
        rows = await self._containers({f"{_labels.USER}{k}": v for k, v in (labels or {}).items()}, running=False)
        now = time.time()
        stale = []
        for row in rows:
            row_labels: Mapping[str, str] = _labels.present(row.get("Labels") or {})
            reason = _gc.stale_reason(row_labels, str(row.get("State", "")), now)
            if reason is None:
                continue
            removed = False
            if not dry_run:
                try:
                    await self._remove(client, row["Id"])
                    removed = True
                except SandboxError:
                    removed = False
            info = _info(row)
            stale.append(
                StaleSandbox(
                    id=info.id,
                    name=info.name,
                    app=info.app,
                    state=info.state,
                    reason=reason,
                    removed=removed,
                    provider=PROVIDER,
                )
            )
        live = {(row.get("Labels") or {}).get(_egress.TOKEN) for row in await self._containers({}, running=False)}
        await self.call(_egress.reap, client, {t for t in live if t}, _gc.START_GRACE, dry_run)
        return stale + await self._reap_snapshots(labels, dry_run)

    # ------------------------------------------------------------ snapshots
    @staticmethod
    def _snapshot_image(spec: SandboxSpec) -> str:
        assert spec.snapshot is not None
        if spec.image is not None:
            raise SandboxError(
                ErrorCode.INVALID_ARGUMENT,
                "give either image= or snapshot=, not both: a snapshot brings its own filesystem",
                provider=PROVIDER,
            )
        return _snapshots.image_ref(spec.snapshot)  # whether it exists, the create finds out

    async def list_snapshots(self, *, labels: Mapping[str, str] | None = None) -> builtins.list[SnapshotInfo]:
        """Snapshot images sandboxkit made on this engine, filtered by their bookkeeping labels."""
        client = await _threads.run_sync(self.client)
        wanted = [f"{_snapshots.MANAGED}=1", *(f"{_snapshots.USER}{k}={v}" for k, v in (labels or {}).items())]
        rows = await self.call(client.api.images, name=_snapshots.REPOSITORY, filters={"label": wanted})
        return _snapshots.rows_to_infos(rows)

    async def delete_snapshot(self, snapshot_id: str) -> None:
        """Remove a snapshot image; refused (INVALID_ARGUMENT) while a sandbox started from it exists."""
        client = await _threads.run_sync(self.client)
        ref = _snapshots.image_ref(snapshot_id)
        users = await self._containers({_labels.SNAPSHOT: snapshot_id}, running=False)
        if users:
            raise SandboxError(
                ErrorCode.INVALID_ARGUMENT,
                f"snapshot {snapshot_id!r} is in use by sandbox(es) {', '.join(r['Id'][:12] for r in users)}; "
                "close them first",
                provider=PROVIDER,
            )
        try:
            await self.call(client.api.remove_image, ref, noprune=False)
        except SandboxError as exc:
            text = exc.message.lower()
            if "no such image" in text or isinstance(exc.__cause__, docker.errors.ImageNotFound):
                raise SandboxError(
                    ErrorCode.INVALID_ARGUMENT, f"there is no snapshot {snapshot_id!r}", provider=PROVIDER
                ) from None
            if "conflict" in text or "in use" in text or "being used" in text:
                raise SandboxError(
                    ErrorCode.INVALID_ARGUMENT,
                    f"snapshot {snapshot_id!r} is in use (a container depends on it); close it first",
                    provider=PROVIDER,
                ) from None
            raise

    async def _reap_snapshots(self, labels: Mapping[str, str] | None, dry_run: bool) -> builtins.list[StaleSandbox]:
        stale = []
        for snap in await self.list_snapshots(labels=labels):
            if not _snapshots.expired(snap):
                continue
            removed = False
            if not dry_run:
                try:
                    await self.delete_snapshot(snap.id)
                    removed = True
                except SandboxError:
                    removed = False  # in use: it goes once the sandboxes using it are gone
            stale.append(
                StaleSandbox(
                    id=snap.id,
                    name=None,
                    app="",
                    state=SandboxState.STOPPED,
                    reason="snapshot_expired",
                    removed=removed,
                    provider=PROVIDER,
                )
            )
        return stale

    # ------------------------------------------------------------ volumes
    async def create_volume(self, name: str, *, labels: Mapping[str, str] | None = None) -> VolumeInfo:
        """Create a named Docker volume, labelled as sandboxkit's (plus ``labels``)."""
        _check_volume_name(name)
        client = await _threads.run_sync(self.client)
        try:
            await self.call(client.api.inspect_volume, name, volume=name)
        except SandboxError as exc:
            if exc.code != ErrorCode.VOLUME_ERROR:
                raise
        else:
            raise SandboxError(
                ErrorCode.ALREADY_EXISTS,
                f"volume {name!r} already exists; use it as is, or `sandboxkit volume rm {name}` first",
                provider=PROVIDER,
            )
        volume_labels = {
            _labels.MANAGED: "1",
            _labels.PROVIDER: PROVIDER,
            _labels.CREATED_AT: f"{time.time():.3f}",
            **{f"{_labels.USER}{k}": v for k, v in (labels or {}).items()},
        }
        row = await self.call(client.api.create_volume, name, labels=volume_labels, volume=name)
        return _volume_info(row)

    async def list_volumes(self, *, unmanaged: bool = False) -> builtins.list[VolumeInfo]:
        """Named volumes sandboxkit created; with ``unmanaged`` every named volume of the engine."""
        client = await _threads.run_sync(self.client)
        filters = {} if unmanaged else {"label": [f"{_labels.MANAGED}=1", f"{_labels.PROVIDER}={PROVIDER}"]}
        rows = (await self.call(client.api.volumes, filters=filters)).get("Volumes") or []
        return sorted((_volume_info(row) for row in rows), key=lambda v: v.name)

    async def delete_volume(self, name: str) -> None:
        """Delete a named volume and its data; VOLUME_ERROR when it is missing or mounted."""
        _check_volume_name(name)
        client = await _threads.run_sync(self.client)
        await self.call(client.api.remove_volume, name, volume=name)


def _check_volume_name(name: str) -> None:
    if not isinstance(name, str) or not _VOLUME_NAME.match(name):
        raise SandboxError(
            ErrorCode.INVALID_ARGUMENT,
            f"volume name {name!r} is invalid; use 1-64 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit",
            provider=PROVIDER,
        )


def _volume_info(row: Mapping[str, Any]) -> VolumeInfo:
    labels: Mapping[str, str] = row.get("Labels") or {}
    created = None
    try:
        created = dt.datetime.fromisoformat(str(row.get("CreatedAt", "")).replace("Z", "+00:00"))
    except ValueError:
        pass
    return VolumeInfo(
        name=row["Name"], provider=PROVIDER, created_at=created, managed=labels.get(_labels.MANAGED) == "1"
    )


def _resolve_secrets(names: Sequence[str]) -> dict[str, str]:
    try:
        return resolve_secrets(names)
    except SandboxError as exc:
        raise SandboxError(ErrorCode.SANDBOX_CREATION_FAILED, exc.message, provider=PROVIDER) from None


def _info(row: Mapping[str, Any]) -> SandboxInfo:
    labels: Mapping[str, str] = _labels.present(row.get("Labels") or {})
    created = labels.get(_labels.CREATED_AT)
    return SandboxInfo(
        id=row["Id"],
        name=labels.get(_labels.NAME),
        app=labels.get(_labels.APP, ""),
        tags=_labels.tags(labels),
        state=_STATES.get(str(row.get("State", "")), SandboxState.UNKNOWN),
        created_at=dt.datetime.fromtimestamp(float(created), dt.UTC) if created else None,
        provider=PROVIDER,
    )


class DockerSandbox(SupervisedProcesses, SandboxHandle):
    """One container. Commands go through :class:`ExecEngine`; files through the archive API.

    What the handle knows comes from the container's labels, so a handle from ``from_id`` (in
    another process) behaves like the one ``create`` returned: same secrets, same OOM reporting.
    """

    file_concurrency: ClassVar[int] = 8

    def __init__(
        self,
        provider: DockerProvider,
        container: Any,
        labels: Mapping[str, str],
        *,
        secret_env: Mapping[str, str] | None = None,
        fresh: bool = False,
    ) -> None:
        self.provider = provider
        self.id = container.id
        self.name = labels.get(_labels.NAME)
        self.app = labels.get(_labels.APP, "")
        self.labels = dict(labels)
        self.secret_names = _labels.split(labels.get(_labels.SECRETS))
        self._env_keys = frozenset(_labels.split(labels.get(_labels.ENV_KEYS)))
        self._secret_env = None if secret_env is None else self._without_env_keys(secret_env)
        idle = labels.get(_labels.IDLE_TIMEOUT)
        self._idle_timeout = None if idle is None else float(idle)
        self.egress = _egress.Egress.of(provider, labels)
        self.oom: OomCounter | None = None
        self._tunnels: dict[int, Tunnel] | None = None
        if _labels.MEMORY_MIB in labels:
            self.oom = OomCounter(self.id, self._run_inside)
            if fresh:
                self.oom.baseline = 0
        #: forks refused at the pids limit (every sandbox has one)
        self.pids = PidsCounter(self.id, self._run_inside)
        if fresh:
            self.pids.baseline = 0
        self.engine = ExecEngine(provider.client().api, container.id, self.exec_env)
        attrs: dict[str, Any] = getattr(container, "attrs", None) or {}
        memory = int(float(labels.get(_labels.MEMORY_MIB) or 0)) << 20
        env = (attrs.get("Config") or {}).get("Env")  # None for a new container: looked up if the agent starts
        self.fast = FastExec(self.engine, memory=memory, env=env)  # the agent path, falling back to the engine
        # spawned processes: their supervisor starts through a plain docker exec, apart from the exec agent
        self.supervisor = InSandboxProcesses(
            self.exec, launch=self._launch_detached, detached=True, provider=PROVIDER, sandbox_id=self.id
        )
        # keep the model, not its inspect document (~18 KiB, stale from the moment the container
        # starts): `native_instance.reload()` fetches the current one
        self.container = container.collection.prepare_model({"Id": container.id})

    def __repr__(self) -> str:
        return f"<DockerSandbox id={self.id[:12]!r} name={self.name!r} app={self.app!r}>"

    @property
    def native_instance(self) -> Any:
        return self.container

    @property
    def native_client(self) -> Any:
        return self.provider.client()

    def exec_env(self) -> Mapping[str, str]:
        """Environment added to every exec: the secrets' values, never in the container config.

        ``env=`` keys win over secrets (as in Modal); a reconnected handle reads the local store.
        """
        if self._secret_env is None:
            try:
                values = resolve_secrets(self.secret_names)
            except SandboxError as exc:
                raise SandboxError(
                    ErrorCode.INVALID_ARGUMENT,
                    f"this sandbox was created with secrets {', '.join(self.secret_names)}: {exc.message}",
                    provider=PROVIDER,
                    sandbox_id=self.id,
                ) from None
            self._secret_env = self._without_env_keys(values)
        return self._secret_env

    def _without_env_keys(self, values: Mapping[str, str]) -> dict[str, str]:
        return {k: v for k, v in values.items() if k not in self._env_keys}

    async def _launch_detached(self, request: ExecRequest, on_output: OutputCallback) -> ExecExit:
        """``docker exec -d``: how a process supervisor starts, apart from the exec agent and any stream."""
        api = self._api()
        try:
            created = await self.provider.call(
                api.exec_create,
                self.id,
                list(request.argv),
                environment={**self.exec_env(), **request.env},
                workdir=request.cwd,
                user=request.user or "",
                sandbox_id=self.id,
            )
            await self.provider.call(api.exec_start, created["Id"], detach=True, sandbox_id=self.id)
        except SandboxError as exc:
            if exc.code == ErrorCode.SANDBOX_NOT_FOUND:
                raise
            await on_output("stderr", exc.message.encode())
            return ExecExit(exit_code=126)
        return ExecExit(exit_code=0)

    async def _run_inside(self, argv: builtins.list[str]) -> str:
        """Run a short helper command and return its output (no secrets, no marker)."""
        api = self._api()
        created = await self.provider.call(api.exec_create, self.id, argv, sandbox_id=self.id)
        output = await self.provider.call(api.exec_start, created["Id"], sandbox_id=self.id)
        return bytes(output or b"").decode(errors="replace")

    def _api(self) -> Any:
        return self.provider.client().api

    async def exec(self, request: ExecRequest, on_output: OutputCallback) -> ExecExit:
        before = None if self.oom is None else self.oom.before()
        pids_before = self.pids.before()
        with _warden.command(self.provider, self.id, self._idle_timeout):  # the warden's idle clock
            outcome = await self._run_until_stopped(request, on_output)
        # exec in a container that died or was removed mid-command ends like this, without an error
        if outcome is None or (
            outcome.exit_code in (126, 137, -1) and not outcome.timed_out and await self._stopped(outcome.exit_code)
        ):
            raise SandboxError(
                ErrorCode.SANDBOX_NOT_FOUND,
                "the sandbox stopped while the command ran (closed, expired, or killed from outside)",
                provider=PROVIDER,
                sandbox_id=self.id,
            )
        # Docker's OOMKilled stays false for a kill inside an exec; the cgroup's counter does not
        if self.oom is not None and not outcome.timed_out and await self.oom.killed_since(before, outcome.exit_code):
            return dataclasses.replace(outcome, oom_killed=True)
        # a command that failed while forks were refused at the pids limit failed for that reason
        if outcome.exit_code != 0 and not outcome.timed_out and await self.pids.killed_since(pids_before, 1):
            return dataclasses.replace(outcome, pids_exhausted=True)
        return outcome

    async def _run_until_stopped(self, request: ExecRequest, on_output: OutputCallback) -> ExecExit | None:
        """Run the command; None when the container stopped while its stream stayed open (it was ended)."""
        outcome: ExecExit | None = None
        failure: Exception | None = None

        async def watch() -> None:
            await anyio.sleep(STOP_WATCH_AFTER)
            while True:
                try:
                    if not await self._alive():
                        break
                except SandboxError:  # the engine did not answer: that is not the sandbox stopping
                    pass
                await anyio.sleep(STOP_WATCH_EVERY)
            tg.cancel_scope.cancel()

        async with anyio.create_task_group() as tg:
            tg.start_soon(watch)
            try:
                outcome = await self.fast.run(request, on_output)
            except Exception as exc:  # raised after the group, unwrapped
                failure = exc
            tg.cancel_scope.cancel()
        if failure is not None:
            raise failure
        return outcome

    async def _stopped(self, exit_code: int) -> bool:
        """True when the sandbox stopped (or this handle is closing it). Killed from outside, it still
        looks alive for ~0.1 s after its commands died with 137, so that code gets two more looks."""
        if self.fast.closed:
            return True
        for pause in (0.0, 0.1, 0.2) if exit_code == 137 else (0.0,):
            await anyio.sleep(pause)
            if not await self._alive():
                return True
        return False

    async def _alive(self) -> bool:
        return await self.status() in (SandboxState.RUNNING, SandboxState.PENDING)

    async def status(self) -> SandboxState:
        try:
            info = await self.provider.call(self._api().inspect_container, self.id, sandbox_id=self.id)
        except SandboxError as exc:
            if exc.code == ErrorCode.SANDBOX_NOT_FOUND:
                return SandboxState.TERMINATED
            raise
        return _STATES.get(str(info.get("State", {}).get("Status", "")), SandboxState.UNKNOWN)

    async def terminate(self) -> None:
        self.fast.close()
        if self._idle_timeout is not None:
            self.provider.activity().forget(self.id)
        try:
            await self.provider.call(self._api().remove_container, self.id, force=True, v=True, sandbox_id=self.id)
        except SandboxError as exc:
            if exc.code != ErrorCode.SANDBOX_NOT_FOUND:
                raise
        if self.egress is not None:
            await self.egress.remove()

    # ------------------------------------------------------------ network policy
    async def set_network(self, policy: NetworkPolicy) -> None:
        if self.egress is None:
            raise SandboxError(
                ErrorCode.INVALID_ARGUMENT,
                "this sandbox was created without network=; create it with a NetworkPolicy to change it at runtime",
                provider=PROVIDER,
                sandbox_id=self.id,
            )
        await self.egress.apply(_egress.resolve(policy))
        self.network_policy = policy

    async def network_log(self) -> builtins.list[NetworkEvent]:
        return [] if self.egress is None else await self.egress.events()

    # ------------------------------------------------------------ ports and snapshots
    async def tunnels(self) -> dict[int, Tunnel]:
        if self._tunnels is None:
            info = await self.provider.call(self._api().inspect_container, self.id, sandbox_id=self.id)
            self._tunnels = _tunnels(info)
        return dict(self._tunnels)

    async def snapshot(self, *, labels: Mapping[str, str], ttl: float | None = None) -> SnapshotInfo:
        snapshot_id = _snapshots.new_id()
        mine = {k[len(_labels.USER) :]: v for k, v in self.labels.items() if k.startswith(_labels.USER)}
        mine.pop(_labels.OWNER_KEY, None)  # the snapshot outlives whoever owns the sandbox
        image_labels = _snapshots.commit_labels(self.labels, self.id, {**mine, **labels}, ttl, time.time())
        commit = _snapshots.commit_with_tmp if self.labels.get(_labels.TMP_VOLUME) else _snapshots.commit
        await self.provider.call(commit, self._api(), self.id, snapshot_id, image_labels, sandbox_id=self.id)
        return _snapshots.info(snapshot_id, image_labels)

    # ------------------------------------------------------------ files
    async def write_file(self, path: str, data: bytes) -> None:
        (error,) = await self.write_files([(path, data)])
        if error is not None:
            raise error

    async def write_files(self, files: Sequence[tuple[str, bytes]]) -> builtins.list[SandboxError | None]:
        if not files:
            return []
        if any(_kernelfs.is_kernel_path(path) for path, _ in files):  # refused on every path, see _kernelfs
            refused: builtins.list[SandboxError | None] = [
                self._kernel_write_error(path) if _kernelfs.is_kernel_path(path) else None for path, _ in files
            ]
            rest = [(path, data) for path, data in files if not _kernelfs.is_kernel_path(path)]
            done = iter(await self.write_files(rest))
            return [error if error is not None else next(done) for error in refused]
        if self.fast.transfer_agent() is None:
            return await self._write_archived(files)
        results: builtins.list[SandboxError | None] = []
        for path, data in files:  # in order; what the agent declines, the archive API does (and judges)
            if await self.fast.write_file(path, data):
                results.append(None)
            else:
                results += await self._write_archived([(path, data)])
        return results

    def _kernel_write_error(self, path: str) -> SandboxError:
        return file_error(
            "permission_denied",
            path,
            "/proc and /sys are kernel filesystems; change them with execute() (e.g. sysctl) if the sandbox allows it",
            provider=PROVIDER,
            sandbox_id=self.id,
        )

    async def _write_archived(self, files: Sequence[tuple[str, bytes]]) -> builtins.list[SandboxError | None]:
        try:
            await self._put(list(files))
            return [None] * len(files)
        except SandboxError as exc:
            failure = await self._gone(exc)
            if failure.code == ErrorCode.SANDBOX_NOT_FOUND:
                raise failure from None
            if len(files) == 1:
                return [self._file_error(files[0][0], exc)]
        results: builtins.list[SandboxError | None] = []
        for path, data in files:  # one failed the batch: find out which, write the rest
            try:
                await self._put([(path, data)])
                results.append(None)
            except SandboxError as exc:
                results.append(self._file_error(path, exc))
        return results

    async def _put(self, files: builtins.list[tuple[str, bytes]]) -> None:
        res = await self.provider.call(
            _dockerpy.put_archive, self._api(), self.id, _archive.pack(files), sandbox_id=self.id
        )
        if res.status_code != 200:
            raise SandboxError(
                ErrorCode.FILE_OPERATION_FAILED, "docker refused the archive", provider=PROVIDER, sandbox_id=self.id
            )

    def _file_error(self, path: str, exc: SandboxError) -> SandboxError:
        if exc.code == ErrorCode.SANDBOX_NOT_FOUND and "no such container" in exc.message.lower():
            return exc
        text = exc.message.lower()
        if "not a directory" in text or "no such file" in text or "could not find the file" in text:
            kind = "file_not_found" if "could not find" in text or "no such file" in text else "invalid_path"
        elif "is a directory" in text or "cannot overwrite directory" in text:
            kind = "is_directory"
        elif "permission denied" in text or "read-only" in text:
            kind = "permission_denied"
        elif exc.code == ErrorCode.SANDBOX_NOT_FOUND:
            return exc
        else:
            kind = "invalid_path"
        return file_error(kind, path, exc.message, provider=PROVIDER, sandbox_id=self.id)

    async def _gone(self, exc: SandboxError) -> SandboxError:
        """``exc`` as a file error, or SANDBOX_NOT_FOUND when the container is no longer running."""
        if exc.code != ErrorCode.SANDBOX_NOT_FOUND and not await self._alive():
            return SandboxError(
                ErrorCode.SANDBOX_NOT_FOUND,
                "the sandbox is no longer running (closed or expired)",
                provider=PROVIDER,
                sandbox_id=self.id,
            )
        return exc

    async def read_file(self, path: str) -> bytes:
        data = await self.fast.read_file(path)
        if data is not None:
            return data
        if _kernelfs.is_kernel_path(path):
            return await self._read_live(path)
        current = path
        for _ in range(16):  # follow symlinks, as reading a path inside the sandbox would
            try:
                member = await self.provider.call(_archive.fetch, self._api(), self.id, current, sandbox_id=self.id)
            except SandboxError as exc:
                if exc.code == ErrorCode.SANDBOX_NOT_FOUND and "no such container" not in exc.message.lower():
                    exc = file_error("file_not_found", path, provider=PROVIDER, sandbox_id=self.id)
                raise await self._gone(exc) from None
            if isinstance(member, bytes):
                return member
            if member.issym():
                current = _archive.resolve_link(current, member.linkname)
                continue
            if member.isdir():
                raise file_error("is_directory", path, provider=PROVIDER, sandbox_id=self.id)
            raise file_error("invalid_path", path, "not a regular file", provider=PROVIDER, sandbox_id=self.id)
        raise file_error(
            "invalid_path", path, "too many levels of symbolic links", provider=PROVIDER, sandbox_id=self.id
        )

    async def _read_live(self, path: str) -> bytes:
        """A /proc or /sys file as the sandbox sees it (the archive API sees the layer under them)."""
        code, out, err = await self.provider.call(_kernelfs.read_live, self._api(), self.id, path, sandbox_id=self.id)
        if code == 0:
            return out
        text = err.decode(errors="replace").strip()
        if "no such file" in text.lower():
            kind = "file_not_found"
        elif "is a directory" in text.lower():
            kind = "is_directory"
        elif "permission denied" in text.lower():
            kind = "permission_denied"
        else:
            kind = "invalid_path"
        raise file_error(kind, path, text[-200:], provider=PROVIDER, sandbox_id=self.id)


def _tunnels(inspected: Mapping[str, Any]) -> dict[int, Tunnel]:
    """The published ports of an inspected container: ``{port: Tunnel}`` (loopback bindings only)."""
    found: dict[int, Tunnel] = {}
    for key, bindings in ((inspected.get("NetworkSettings") or {}).get("Ports") or {}).items():
        port, _, proto = key.partition("/")
        for binding in bindings or []:
            host = binding.get("HostIp") or "127.0.0.1"
            if proto == "tcp" and host in ("127.0.0.1", "::1") and binding.get("HostPort"):
                host_port = int(binding["HostPort"])
                bracketed = f"[{host}]" if ":" in host else host
                found[int(port)] = Tunnel(
                    port=int(port), url=f"http://{bracketed}:{host_port}", host=host, host_port=host_port
                )
                break
    return found


__all__ = ["DockerOptions", "DockerProvider", "DockerSandbox", "map_error"]
