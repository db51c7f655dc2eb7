"""DockerProvider: sandboxes as local (or DOCKER_HOST) containers, through docker-py."""

from __future__ import annotations

import builtins
import datetime as dt
import hashlib
import math
import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from importlib.metadata import PackageNotFoundError, version
from typing import Any, ClassVar, Literal, TypeVar

import anyio
import anyio.to_thread
import docker
import docker.errors
from pydantic import BaseModel, ConfigDict, Field
from sandboxkit_docker import _archive
from sandboxkit_docker._errors import PROVIDER, map_error, translate
from sandboxkit_docker._exec import ExecEngine
from sandboxkit_docker.images import DEFAULT_IMAGE

from sandboxkit import Capability
from sandboxkit.spi import (
    ErrorCode,
    ExecExit,
    ExecRequest,
    OutputCallback,
    Provider,
    SandboxError,
    SandboxHandle,
    SandboxInfo,
    SandboxSpec,
    SandboxState,
    file_error,
)

T = TypeVar("T")

LABEL = "sandboxkit"
MANAGED = f"{LABEL}.managed"
#: Seconds to wait for the engine before reporting PROVIDER_UNAVAILABLE.
CONNECT_TIMEOUT = 2.0
#: Read timeout for ordinary API calls once connected (large archives take a while).
API_TIMEOUT = 300.0

_STATES = {
    "created": SandboxState.PENDING,
    "running": SandboxState.RUNNING,
    "restarting": SandboxState.PENDING,
    "paused": SandboxState.STOPPED,
    "exited": SandboxState.STOPPED,
    "removing": SandboxState.TERMINATED,
    "dead": SandboxState.FAILED,
}


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


def container_name(app: str, name: str) -> str:
    """Docker container name for a named sandbox: readable, and unique per (app, name)."""
    digest = hashlib.sha256(f"{app}\x00{name}".encode()).hexdigest()[:8]
    return f"{app}.{name}.{digest}"


class DockerProvider(Provider):
    """Runs each sandbox as a container whose PID 1 is ``sleep <timeout>``, so it dies on time by itself."""

    name: ClassVar[str] = PROVIDER
    capabilities: ClassVar[frozenset[Capability]] = frozenset(
        {
            Capability.STDIN,
            Capability.STREAMING,
            Capability.NETWORK_BLOCK,
            Capability.NAMED,
            Capability.LIST,
            Capability.TAGS,
            Capability.RESOURCE_LIMITS,
            Capability.USER,
            Capability.RECONNECT,
        }
    )
    options_type: ClassVar[type[BaseModel]] = DockerOptions

    def __init__(self, auth: Mapping[str, str] | None = None) -> None:
        super().__init__(auth)
        self._client: docker.DockerClient | None = None
        self._lock = threading.Lock()

    def version(self) -> str:
        try:
            return version("sandboxkit-docker")
        except PackageNotFoundError:
            return "unknown"

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
        self, func: Callable[..., T], *args: Any, sandbox_id: str | None = None, creating: bool = False, **kw: Any
    ) -> T:
        """Run a blocking docker-py call off the event loop, translating its errors."""

        def run() -> T:
            with translate(sandbox_id=sandbox_id, creating=creating):
                return func(*args, **kw)

        return await anyio.to_thread.run_sync(run)

    async def aclose(self) -> None:
        if self._client is not None:
            await anyio.to_thread.run_sync(self._client.close)
            self._client = None

    # ------------------------------------------------------------ create
    async def create(self, spec: SandboxSpec, options: BaseModel) -> DockerSandbox:
        assert isinstance(options, DockerOptions)
        client = await anyio.to_thread.run_sync(self.client)
        image = spec.image or os.environ.get("SANDBOXKIT_DEFAULT_IMAGE") or DEFAULT_IMAGE
        await self._ensure_image(client, image, options.pull, explicit=spec.image is not None)
        now = time.time()
        labels = {
            MANAGED: "1",
            f"{LABEL}.provider": PROVIDER,
            f"{LABEL}.app": spec.app,
            f"{LABEL}.created_at": f"{now:.3f}",
            f"{LABEL}.expires_at": f"{now + spec.timeout:.3f}",
            **{f"{LABEL}.tag.{k}": v for k, v in spec.tags.items()},
            **{f"{LABEL}.label.{k}": v for k, v in spec.labels.items()},
        }
        if spec.name:
            labels[f"{LABEL}.name"] = spec.name
        kwargs: dict[str, Any] = {
            "image": image,
            "entrypoint": ["sleep"],
            "command": [str(math.ceil(spec.timeout))],
            "init": True,
            "auto_remove": True,
            "detach": True,
            "labels": labels,
            "environment": dict(spec.env),
            "working_dir": spec.workdir,
            "pids_limit": options.pids_limit,
            "hostname": options.hostname,
            "user": options.user,
        }
        if spec.name:
            kwargs["name"] = container_name(spec.app, spec.name)
        if spec.block_network:
            kwargs["network_mode"] = "none"
        if spec.cpu is not None:
            kwargs["nano_cpus"] = int(spec.cpu * 1e9)
        if spec.memory_mib is not None:
            kwargs["mem_limit"] = kwargs["memswap_limit"] = f"{spec.memory_mib}m"
        container = await self._create_container(client, kwargs, spec)
        try:
            await self.call(container.start, sandbox_id=container.id, creating=True)
        except BaseException:
            with anyio.CancelScope(shield=True):
                await self._remove(client, container.id)
            raise
        return DockerSandbox(self, container, labels)

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
                return await self.call(client.containers.create, creating=True, **kwargs)
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
            await self.call(client.api.remove_container, container_id, force=True, sandbox_id=container_id)
        except SandboxError as exc:
            if exc.code not in (ErrorCode.SANDBOX_NOT_FOUND,):
                raise

    # ------------------------------------------------------------ find
    async def from_id(self, sandbox_id: str) -> DockerSandbox:
        client = await anyio.to_thread.run_sync(self.client)
        container = await self.call(client.containers.get, sandbox_id, sandbox_id=sandbox_id)
        labels = container.labels or {}
        if labels.get(MANAGED) != "1" or labels.get(f"{LABEL}.provider") != PROVIDER:
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
        return DockerSandbox(self, container, labels)

    async def from_name(self, app: str, name: str) -> DockerSandbox:
        found = await self._containers({f"{LABEL}.app": app, f"{LABEL}.name": name}, running=True)
        if not found:
            raise SandboxError(
                ErrorCode.SANDBOX_NOT_FOUND, f"no running sandbox named {name!r} in app {app!r}", provider=PROVIDER
            )
        return await self.from_id(found[0]["Id"])

    async def _containers(self, labels: Mapping[str, str], running: bool) -> builtins.list[dict[str, Any]]:
        client = await anyio.to_thread.run_sync(self.client)
        filters: dict[str, Any] = {
            "label": [f"{MANAGED}=1", f"{LABEL}.provider={PROVIDER}", *(f"{k}={v}" for k, v in labels.items())]
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
        wanted = {f"{LABEL}.tag.{k}": v for k, v in (tags or {}).items()}
        wanted.update({f"{LABEL}.label.{k}": v for k, v in (labels or {}).items()})
        if app is not None:
            wanted[f"{LABEL}.app"] = app
        rows = await self._containers(wanted, running=False)
        return [info for row in rows if (info := _info(row)).state in (SandboxState.RUNNING, SandboxState.PENDING)]


def _info(row: Mapping[str, Any]) -> SandboxInfo:
    labels: Mapping[str, str] = row.get("Labels") or {}
    prefix = f"{LABEL}.tag."
    created = labels.get(f"{LABEL}.created_at")
    return SandboxInfo(
        id=row["Id"],
        name=labels.get(f"{LABEL}.name"),
        app=labels.get(f"{LABEL}.app", ""),
        tags={k[len(prefix) :]: v for k, v in labels.items() if k.startswith(prefix)},
        state=_STATES.get(str(row.get("State", "")), SandboxState.UNKNOWN),
        created_at=dt.datetime.fromtimestamp(float(created), dt.UTC) if created else None,
        provider=PROVIDER,
    )


class DockerSandbox(SandboxHandle):
    """One container. Commands go through :class:`ExecEngine`; files through the archive API."""

    def __init__(self, provider: DockerProvider, container: Any, labels: Mapping[str, str]) -> None:
        self.provider = provider
        self.container = container
        self.id = container.id
        self.name = labels.get(f"{LABEL}.name")
        self.app = labels.get(f"{LABEL}.app", "")
        self.labels = dict(labels)
        self.engine = ExecEngine(provider.client().api, container.id, self.exec_env)

    @property
    def native_instance(self) -> Any:
        return self.container

    @property
    def native_client(self) -> Any:
        return self.provider.client()

    def exec_env(self) -> Mapping[str, str]:
        """Environment added to every exec (secrets live here, never in the container config)."""
        return {}

    def _api(self) -> Any:
        return self.provider.client().api

    async def exec(self, request: ExecRequest, on_output: OutputCallback) -> ExecExit:
        outcome = await self.engine.run(request, on_output)
        # exec in a container that died or was removed mid-command ends like this, without an error
        if outcome.exit_code in (126, 137, -1) and not outcome.timed_out and not await self._alive():
            raise SandboxError(
                ErrorCode.SANDBOX_NOT_FOUND,
                "the sandbox stopped while the command ran (closed, expired, or killed from outside)",
                provider=PROVIDER,
                sandbox_id=self.id,
            )
        return outcome

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
        try:
            await self.provider.call(self._api().remove_container, self.id, force=True, sandbox_id=self.id)
        except SandboxError as exc:
            if exc.code != ErrorCode.SANDBOX_NOT_FOUND:
                raise

    # ------------------------------------------------------------ files
    async def write_file(self, path: str, data: bytes) -> None:
        (error,) = await self.write_files([(path, data)])
        if error is not None:
            raise error

    async def write_files(self, files: Sequence[tuple[str, bytes]]) -> builtins.list[SandboxError | None]:
        if not files:
            return []
        try:
            await self._put(list(files))
            return [None] * len(files)
        except SandboxError as exc:
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
        ok = await self.provider.call(self._api().put_archive, self.id, "/", _archive.pack(files), sandbox_id=self.id)
        if not ok:
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

    async def read_file(self, path: str) -> bytes:
        current = path
        for _ in range(16):  # follow symlinks, as reading a path inside the sandbox would
            try:
                member = await self.provider.call(_archive.fetch, self._api(), self.id, current, sandbox_id=self.id)
            except SandboxError as exc:
                if exc.code == ErrorCode.SANDBOX_NOT_FOUND and "no such container" not in exc.message.lower():
                    raise file_error("file_not_found", path, provider=PROVIDER, sandbox_id=self.id) from None
                raise
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

    async def read_files(self, paths: Sequence[str]) -> builtins.list[bytes | SandboxError]:
        results: builtins.list[bytes | SandboxError] = [b""] * len(paths)
        limiter = anyio.CapacityLimiter(8)

        async def one(i: int, path: str) -> None:
            async with limiter:
                try:
                    results[i] = await self.read_file(path)
                except SandboxError as exc:
                    results[i] = exc

        async with anyio.create_task_group() as tg:
            for i, path in enumerate(paths):
                tg.start_soon(one, i, path)
        return results


__all__ = ["DockerOptions", "DockerProvider", "DockerSandbox", "map_error"]
