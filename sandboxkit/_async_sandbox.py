"""AsyncSandbox: the user-facing async facade over one provider's SandboxHandle."""

from __future__ import annotations

import builtins
import math
import os
import posixpath
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar, final

import anyio
from pydantic import BaseModel, ValidationError

from sandboxkit._calls import get_provider, guarded, require, require_known
from sandboxkit._capabilities import Capability
from sandboxkit._collect import DEFAULT_MAX_OUTPUT, Collector, as_bytes, with_result
from sandboxkit._errors import (
    ErrorCode,
    FileOperationError,
    SandboxError,
    redact,
)
from sandboxkit._network import NetworkPolicy, as_policy, check_secrets
from sandboxkit._ports import check_port, probe_argv
from sandboxkit._provider import OutputCallback, Provider, SandboxHandle
from sandboxkit._registry import default_provider_name, registry
from sandboxkit._spec import SandboxSpec, build_spec, check_env, validation_error
from sandboxkit._stream import AsyncExecStream
from sandboxkit._types import (
    ExecRequest,
    ExecResult,
    FileDownloadResult,
    FileUploadResult,
    NetworkEvent,
    OutputChunk,
    ProcessInfo,
    SandboxInfo,
    SpawnRequest,
    Tunnel,
)

if TYPE_CHECKING:
    from sandboxkit._process import AsyncProcess
    from sandboxkit._snapshot import Snapshot

T = TypeVar("T")

#: How long past its timeout the facade waits for a provider to report the kill itself.
TIMEOUT_GRACE = 10.0
#: Default lifetime of a snapshot: 30 days, as on Modal.
SNAPSHOT_TTL = 30 * 24 * 3600.0
#: Env var with labels added to every sandbox this process creates: ``k=v,k2=v2``.
LABELS_ENV = "SANDBOXKIT_LABELS"

Command = str | Sequence[str]


def env_labels() -> dict[str, str]:
    """Labels from ``$SANDBOXKIT_LABELS``."""
    pairs = (p.partition("=") for p in os.environ.get(LABELS_ENV, "").split(",") if "=" in p)
    return {k.strip(): v.strip() for k, _, v in pairs if k.strip()}


def _spec_capabilities(spec: SandboxSpec) -> builtins.list[tuple[Capability, str]]:
    wanted = [
        (spec.gpu is not None, Capability.GPU, "gpu="),
        (bool(spec.volumes), Capability.VOLUMES, "volumes="),
        (bool(spec.secrets), Capability.SECRETS, "secrets="),
        (spec.block_network, Capability.NETWORK_BLOCK, "block_network=True"),
        (spec.name is not None, Capability.NAMED, "name="),
        (bool(spec.tags), Capability.TAGS, "tags="),
        (spec.idle_timeout is not None, Capability.IDLE_TIMEOUT, "idle_timeout="),
        (spec.cpu is not None or spec.memory_mib is not None, Capability.RESOURCE_LIMITS, "cpu=/memory_mib="),
        (bool(spec.ports), Capability.PORTS, "ports="),
        (spec.snapshot is not None, Capability.SNAPSHOTS, "snapshot="),
        # injection first: a provider with neither is told about the finer one the options need
        (bool(spec.network and spec.network.inject), Capability.CREDENTIAL_INJECTION, "NetworkPolicy(inject=)"),
        (spec.network is not None, Capability.NETWORK_POLICY, "network="),
    ]
    return [(cap, what) for on, cap, what in wanted if on]


def _absolute(path: str, what: str = "path") -> str:
    if not isinstance(path, str) or not path.startswith("/") or "\x00" in path:
        raise SandboxError(
            ErrorCode.INVALID_ARGUMENT, f"{what} must be an absolute path inside the sandbox, got {path!r}"
        )
    return posixpath.normpath(path)


@final
class AsyncSandbox:
    """One sandbox on any provider. ``await AsyncSandbox.create(...)``, then ``execute``, files, ``close``."""

    def __init__(self, provider: str | None = None, **options: Any) -> None:
        """Two-step form: hold the options; ``await initialize()`` creates the sandbox."""
        self._provider_name = provider or default_provider_name()
        self._options = options
        self._provider: Provider | None = None
        self._handle: SandboxHandle | None = None
        self._spec: SandboxSpec | None = None
        self._closed = False

    # ----------------------------------------------------------------- lifecycle
    @classmethod
    async def create(cls, provider: str | None = None, **options: Any) -> AsyncSandbox:
        """Create and start a sandbox; see the README for every option."""
        sandbox = cls(provider, **options)
        await sandbox.initialize()
        return sandbox

    async def initialize(self) -> AsyncSandbox:
        """Create the sandbox held by the two-step form; ALREADY_INITIALIZED on a second call."""
        if self._handle is not None or self._closed:
            raise SandboxError(
                ErrorCode.ALREADY_INITIALIZED,
                "this sandbox is already initialized; create another Sandbox object for a new sandbox",
                provider=self._provider_name,
            )
        options = dict(self._options)
        options["labels"] = {**env_labels(), **dict(options.get("labels") or {})}
        spec = build_spec(options)
        if spec.secrets:
            from sandboxkit.secrets import remember_local_secrets  # (python-dotenv only when needed)

            remember_local_secrets(spec.secrets)  # their values never show in an error message
        provider = get_provider(self._provider_name, _plain_auth(spec))
        for capability, what in _spec_capabilities(spec):
            await require(provider, capability, what)
        if spec.network is not None:
            check_secrets(spec.network)
        provider_options = _provider_options(provider, spec.provider_options)
        handle = await guarded(
            provider.name, None, ErrorCode.SANDBOX_CREATION_FAILED, provider.create(spec, provider_options)
        )
        try:
            if spec.initial_files:
                files = [(p, as_bytes(d, "initial_files value")) for p, d in spec.initial_files.items()]
                errors = await guarded(
                    provider.name, handle.id, ErrorCode.FILE_OPERATION_FAILED, handle.write_files(files)
                )
                failed = [(path, err) for (path, _), err in zip(files, errors, strict=True) if err is not None]
                if failed:
                    path, err = failed[0]
                    raise SandboxError(
                        ErrorCode.SANDBOX_CREATION_FAILED,
                        f"initial file {path} could not be written: {err.message}",
                        provider=provider.name,
                        sandbox_id=handle.id,
                    )
        except BaseException:
            with anyio.CancelScope(shield=True):
                await _quiet(handle.terminate())
            raise
        self._provider, self._handle, self._spec = provider, handle, spec
        return self

    @classmethod
    async def from_id(
        cls, sandbox_id: str, provider: str | None = None, *, auth: Mapping[str, str] | None = None, **unknown: Any
    ) -> AsyncSandbox:
        """Reconnect to a live sandbox by id; SANDBOX_NOT_FOUND when it is gone."""
        prov = get_provider(provider, _auth_only(auth, unknown, "from_id"))
        await require(prov, Capability.RECONNECT, "from_id")
        if not isinstance(sandbox_id, str) or not sandbox_id:
            raise SandboxError(ErrorCode.INVALID_ARGUMENT, "sandbox_id must be a non-empty string")
        handle = await guarded(prov.name, sandbox_id, ErrorCode.SANDBOX_NOT_FOUND, prov.from_id(sandbox_id))
        return cls._attach(prov, handle)

    @classmethod
    async def from_name(
        cls,
        app: str,
        name: str,
        provider: str | None = None,
        *,
        auth: Mapping[str, str] | None = None,
        **unknown: Any,
    ) -> AsyncSandbox:
        """Find a live sandbox by its app and name; SANDBOX_NOT_FOUND when none is running."""
        prov = get_provider(provider, _auth_only(auth, unknown, "from_name"))
        await require(prov, Capability.NAMED, "from_name")
        handle = await guarded(prov.name, None, ErrorCode.SANDBOX_NOT_FOUND, prov.from_name(app, name))
        return cls._attach(prov, handle)

    @classmethod
    async def list(
        cls,
        provider: str | None = None,
        *,
        app: str | None = None,
        tags: Mapping[str, str] | None = None,
        labels: Mapping[str, str] | None = None,
        auth: Mapping[str, str] | None = None,
        **unknown: Any,
    ) -> builtins.list[SandboxInfo]:
        """Live sandboxes of a provider, filtered by app and tags (all must match)."""
        prov = get_provider(provider, _auth_only(auth, unknown, "list"))
        await require(prov, Capability.LIST, "list")
        if tags:
            await require(prov, Capability.TAGS, "filtering by tags")
        return await guarded(
            prov.name,
            None,
            ErrorCode.PROVIDER_UNAVAILABLE,
            prov.list(app=app, tags=dict(tags or {}), labels=dict(labels or {})),
        )

    @classmethod
    def _attach(cls, provider: Provider, handle: SandboxHandle) -> AsyncSandbox:
        sandbox = cls(provider.name)
        sandbox._provider, sandbox._handle = provider, handle
        return sandbox

    async def close(self) -> None:
        """Terminate the sandbox. Idempotent; later calls on it raise SANDBOX_NOT_FOUND."""
        if self._closed or self._handle is None:
            self._closed = True
            return
        self._closed = True
        handle, provider = self._handle, self._provider
        assert provider is not None
        with anyio.CancelScope(shield=True):
            await guarded(provider.name, handle.id, ErrorCode.PROVIDER_UNAVAILABLE, handle.terminate())

    async def __aenter__(self) -> AsyncSandbox:
        if self._handle is None and not self._closed:
            await self.initialize()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # ----------------------------------------------------------------- identity
    @property
    def id(self) -> str:
        """The provider's id for this sandbox (``from_id`` takes it)."""
        return self._live_handle(allow_closed=True).id

    @property
    def name(self) -> str | None:
        """The sandbox's name, or None."""
        return self._live_handle(allow_closed=True).name

    @property
    def app(self) -> str:
        """The app the sandbox belongs to."""
        return self._live_handle(allow_closed=True).app

    @property
    def provider(self) -> str:
        """The provider's registry name."""
        return self._provider_name

    @property
    def capabilities(self) -> frozenset[Capability]:
        """What this sandbox's provider can honour now (``Provider.current_capabilities``).

        Known once the sandbox exists; before that (two-step form) it is what the provider
        declares, unless another sandbox of this process asked already. ``Sandbox.capabilities``
        is always current; in async code, ``await sandboxkit.aprovider_capabilities(name)``.
        """
        provider = self._provider or get_provider(self._provider_name)
        known = registry.known_capabilities(provider)
        return type(provider).capabilities if known is None else known

    async def _current_capabilities(self) -> frozenset[Capability]:
        provider = self._provider or get_provider(self._provider_name)
        return await guarded(
            provider.name, None, ErrorCode.PROVIDER_UNAVAILABLE, registry.current_capabilities(provider)
        )

    @property
    def instance(self) -> Any:
        """The provider's native sandbox object (a docker Container, a modal.Sandbox).

        A docker Container carries its id only: ``instance.reload()`` fetches its current state.
        """
        return self._live_handle(allow_closed=True).native_instance

    @property
    def client(self) -> Any:
        """The provider SDK's client (a docker.DockerClient, a modal.Client)."""
        return self._live_handle(allow_closed=True).native_client

    @property
    def handle(self) -> SandboxHandle:
        """The provider SPI handle (for provider authors and integrations)."""
        return self._live_handle()

    def __repr__(self) -> str:
        if self._handle is None:
            return f"<AsyncSandbox provider={self._provider_name!r} {'closed' if self._closed else 'not initialized'}>"
        state = " closed" if self._closed else ""
        return (
            f"<AsyncSandbox provider={self._provider_name!r} id={self._handle.id!r} name={self._handle.name!r}{state}>"
        )

    def _live_handle(self, allow_closed: bool = False) -> SandboxHandle:
        if self._handle is None:
            if self._closed and not allow_closed:
                raise SandboxError(ErrorCode.SANDBOX_NOT_FOUND, "this sandbox was closed", provider=self._provider_name)
            raise SandboxError(
                ErrorCode.NOT_INITIALIZED,
                "this sandbox is not initialized; call initialize() or use Sandbox.create(...)",
                provider=self._provider_name,
            )
        if self._closed and not allow_closed:
            raise SandboxError(
                ErrorCode.SANDBOX_NOT_FOUND,
                "this sandbox was closed; create a new one",
                provider=self._provider_name,
                sandbox_id=self._handle.id,
            )
        return self._handle

    # ----------------------------------------------------------------- commands
    def _request(
        self,
        command: Command,
        *,
        timeout: float | None,
        cwd: str | None,
        env: Mapping[str, str] | None,
        stdin: str | bytes | None,
        user: str | int | None,
    ) -> ExecRequest:
        if isinstance(command, str):
            if not command.strip():
                raise SandboxError(ErrorCode.INVALID_ARGUMENT, "command is empty; pass a shell string or an argv list")
            argv: builtins.list[str] = ["sh", "-c", command]
        elif isinstance(command, Sequence) and command and all(isinstance(a, str) for a in command):
            argv = list(command)
        else:
            raise SandboxError(
                ErrorCode.INVALID_ARGUMENT, "command must be a non-empty string or a non-empty list of strings"
            )
        if any("\x00" in a for a in argv):
            raise SandboxError(ErrorCode.INVALID_ARGUMENT, "command must not contain NUL bytes")
        if timeout is not None and not (
            isinstance(timeout, int | float) and not isinstance(timeout, bool) and 0 < timeout < math.inf
        ):
            raise SandboxError(
                ErrorCode.INVALID_ARGUMENT,
                f"timeout must be a positive, finite number of seconds (or None for no limit), got {timeout!r}",
            )
        try:
            check_env(env or {})
        except ValueError as exc:
            raise SandboxError(ErrorCode.INVALID_ARGUMENT, str(exc)) from None
        provider = self._provider
        assert provider is not None
        if stdin is not None:
            require_known(provider, Capability.STDIN, "stdin=")
        if user is not None:
            require_known(provider, Capability.USER, "user=")
        return ExecRequest(
            argv=argv,
            cwd=None if cwd is None else _absolute(cwd, "cwd"),
            env=dict(env or {}),
            stdin=None if stdin is None else as_bytes(stdin, "stdin"),
            user=None if user is None else str(user),
            timeout=None if timeout is None else float(timeout),
        )

    async def _run(
        self, request: ExecRequest, on_output: OutputCallback, collector: Collector, check: bool
    ) -> ExecResult:
        try:
            return await self._run_once(request, on_output, collector, check)
        except SandboxError as exc:
            exc.redact(request.env.values())  # per-call env= values are as secret as secrets=
            raise

    async def _run_once(
        self, request: ExecRequest, on_output: OutputCallback, collector: Collector, check: bool
    ) -> ExecResult:
        handle = self._live_handle()
        provider = self._provider
        assert provider is not None
        call = guarded(provider.name, handle.id, ErrorCode.PROVIDER_UNAVAILABLE, handle.exec(request, on_output))
        outcome = None
        with anyio.move_on_after(None if request.timeout is None else request.timeout + TIMEOUT_GRACE):
            outcome = await call
        if outcome is None:
            raise with_result(
                SandboxError(
                    ErrorCode.COMMAND_TIMEOUT,
                    f"command ran past its timeout of {request.timeout:g}s and the provider did not stop it",
                    provider=provider.name,
                    sandbox_id=handle.id,
                ),
                collector.result(-1),
            )
        result = collector.result(outcome.exit_code)
        where = {"provider": provider.name, "sandbox_id": handle.id}
        if outcome.timed_out:
            raise with_result(
                SandboxError(
                    ErrorCode.COMMAND_TIMEOUT,
                    f"command ran past its timeout of {request.timeout:g}s; its process tree was killed "
                    "(the partial output is on .result)",
                    **where,
                ),
                result,
            )
        if outcome.oom_killed:
            raise with_result(
                SandboxError(
                    ErrorCode.RESOURCE_LIMIT_EXCEEDED,
                    "a process of the command was killed for exceeding the sandbox's memory limit; "
                    "raise memory_mib or use less memory",
                    **where,
                ),
                result,
            )
        if outcome.pids_exhausted:
            raise with_result(
                SandboxError(
                    ErrorCode.RESOURCE_LIMIT_EXCEEDED,
                    f"the command exited with code {result.exit_code} while the sandbox was at its process "
                    "limit (a process could not start); end what holds the processes, or raise the limit",
                    **where,
                ),
                result,
            )
        if check and result.exit_code != 0:
            tail = redact(result.output, request.env.values())[-500:]  # redacted before the cut: no secret's tail
            raise with_result(
                SandboxError(
                    ErrorCode.COMMAND_FAILED,
                    f"command exited with code {result.exit_code}: {tail}",
                    **where,
                ),
                result,
            )
        return result

    async def execute(
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
        """Run a command to its end. A string runs under ``sh -c``; a list runs as argv.

        Non-zero exits are results; ``check=True`` raises COMMAND_FAILED. ``timeout`` kills the
        command's whole process tree and raises COMMAND_TIMEOUT with the partial output.
        """
        self._live_handle()
        request = self._request(command, timeout=timeout, cwd=cwd, env=env, stdin=stdin, user=user)
        collector = Collector(max_output, None)
        return await self._run(request, collector, collector, check)

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
    ) -> AsyncExecStream:
        """Run a command and yield its output live: ``async for chunk in sb.stream(cmd)``.

        After the loop, ``.result`` holds the ExecResult.
        """
        self._live_handle()
        assert self._provider is not None  # a live handle has its provider
        require_known(self._provider, Capability.STREAMING, "stream()")
        request = self._request(command, timeout=timeout, cwd=cwd, env=env, stdin=stdin, user=user)

        def start(forward: Callable[[OutputChunk], Awaitable[None]]) -> Awaitable[ExecResult]:
            collector = Collector(max_output, forward)
            return self._run(request, collector, collector, check)

        return AsyncExecStream(start)

    # ----------------------------------------------------------------- network
    @property
    def network(self) -> NetworkPolicy | None:
        """The egress policy in force (``network=`` or the last ``set_network``); None without one.

        ``block_network=True`` reads as ``NetworkPolicy.deny_all()`` on the object that created it.
        """
        policy = self._live_handle(allow_closed=True).network_policy
        if policy is None and self._spec is not None and self._spec.block_network:
            return NetworkPolicy.deny_all()
        return policy

    async def set_network(self, policy: NetworkPolicy) -> None:
        """Replace the egress policy; new connections follow it within 1 s (capability NETWORK_POLICY)."""
        handle = self._live_handle()
        policy = as_policy(policy)
        provider = self._provider or get_provider(self._provider_name)
        if policy.inject:
            await require(provider, Capability.CREDENTIAL_INJECTION, "NetworkPolicy(inject=)")
        await require(provider, Capability.NETWORK_POLICY, "set_network")
        check_secrets(policy)
        await guarded(self._provider_name, handle.id, ErrorCode.PROVIDER_UNAVAILABLE, handle.set_network(policy))

    async def network_log(self) -> builtins.list[NetworkEvent]:
        """What the sandbox tried to reach, oldest first, allowed and denied (capability NETWORK_POLICY)."""
        handle = self._live_handle()
        await require(self._provider or get_provider(self._provider_name), Capability.NETWORK_POLICY, "network_log")
        return await guarded(self._provider_name, handle.id, ErrorCode.PROVIDER_UNAVAILABLE, handle.network_log())

    # ----------------------------------------------------------------- files
    async def write_file(self, path: str, content: str | bytes) -> None:
        """Create or replace a file (parents are created). str is written as UTF-8."""
        handle = self._live_handle()
        data = as_bytes(content, "content")
        await guarded(
            self._provider_name, handle.id, ErrorCode.FILE_OPERATION_FAILED, handle.write_file(_absolute(path), data)
        )

    async def read_file(self, path: str) -> bytes:
        """A file's bytes; FILE_OPERATION_FAILED when it is missing or a directory."""
        handle = self._live_handle()
        return await guarded(
            self._provider_name, handle.id, ErrorCode.FILE_OPERATION_FAILED, handle.read_file(_absolute(path))
        )

    async def upload_files(self, files: Sequence[tuple[str, str | bytes]]) -> builtins.list[FileUploadResult]:
        """Write many files at once; one result per file, in order. Failures do not stop the rest."""
        _check_items(files, "upload_files", "a list of (path, content) pairs, e.g. [('/tmp/a.txt', b'data')]", _pair)
        handle = self._live_handle()
        results: builtins.list[FileUploadResult | None] = [None] * len(files)
        batch: builtins.list[tuple[int, str, bytes]] = []
        for i, (path, content) in enumerate(files):
            try:
                batch.append((i, _absolute(path), as_bytes(content, "content")))
            except SandboxError:
                results[i] = FileUploadResult(path=path, error="invalid_path")
        errors = await guarded(
            self._provider_name,
            handle.id,
            ErrorCode.FILE_OPERATION_FAILED,
            handle.write_files([(p, d) for _, p, d in batch]),
        )
        _raise_unless_file_errors(errors)
        for (i, _, _), err in zip(batch, errors, strict=True):
            results[i] = FileUploadResult(path=files[i][0], error=_file_kind(err))
        return [r for r in results if r is not None]

    async def download_files(self, paths: Sequence[str]) -> builtins.list[FileDownloadResult]:
        """Read many files at once; one result per path, in order, with content or error."""
        _check_items(paths, "download_files", "a list of absolute paths, e.g. ['/tmp/a.txt']", _path_item)
        handle = self._live_handle()
        results: builtins.list[FileDownloadResult | None] = [None] * len(paths)
        batch: builtins.list[tuple[int, str]] = []
        for i, path in enumerate(paths):
            try:
                batch.append((i, _absolute(path)))
            except SandboxError:
                results[i] = FileDownloadResult(path=path, error="invalid_path")
        contents = await guarded(
            self._provider_name, handle.id, ErrorCode.FILE_OPERATION_FAILED, handle.read_files([p for _, p in batch])
        )
        _raise_unless_file_errors([c for c in contents if isinstance(c, SandboxError)])
        for (i, _), got in zip(batch, contents, strict=True):
            if isinstance(got, SandboxError):
                results[i] = FileDownloadResult(path=paths[i], error=_file_kind(got))
            else:
                results[i] = FileDownloadResult(path=paths[i], content=got)
        return [r for r in results if r is not None]

    # ----------------------------------------------------------------- processes
    async def _process_call(self, make: Callable[[SandboxHandle], Awaitable[T]], *, pty: bool = False) -> T:
        handle = self._live_handle()
        provider = self._provider
        assert provider is not None
        if pty:  # the finer one first: a provider with neither is told about the terminal
            require_known(provider, Capability.PTY, "pty=True")
        require_known(provider, Capability.PROCESSES, "spawned processes")
        return await guarded(provider.name, handle.id, ErrorCode.PROVIDER_UNAVAILABLE, make(handle))

    async def spawn(
        self,
        command: Command,
        *,
        cwd: str | None = None,
        env: Mapping[str, str] | None = None,
        user: str | int | None = None,
        pty: bool = False,
        size: tuple[int, int] | None = None,
    ) -> AsyncProcess:
        """Start a command in the background; it outlives this call and this client.

        ``pty=True`` runs it on a terminal of ``size`` (rows, cols; default 24x80): output is the
        terminal's byte stream, stdin goes through the line discipline.
        """
        from sandboxkit._process import AsyncProcess

        self._live_handle()
        request = self._request(command, timeout=None, cwd=cwd, env=env, stdin=None, user=user)
        if size is not None and (
            not pty
            or not isinstance(size, tuple | list)
            or len(size) != 2
            or not all(isinstance(v, int) and 1 <= v <= 10000 for v in size)
        ):
            raise SandboxError(
                ErrorCode.INVALID_ARGUMENT, f"size must be (rows, cols) of ints with pty=True, got {size!r}"
            )
        spawn = SpawnRequest(
            argv=request.argv,
            cwd=request.cwd,
            env=request.env,
            user=request.user,
            pty=bool(pty),
            size=None if size is None else (size[0], size[1]),
        )
        info = await self._process_call(lambda h: h.spawn(spawn), pty=bool(pty))
        return AsyncProcess(self, info)

    async def processes(self) -> builtins.list[ProcessInfo]:
        """Every process spawned in this sandbox, by any client, running or ended."""
        return await self._process_call(lambda h: h.processes())

    async def process(self, process_id: str) -> AsyncProcess:
        """Reattach to a spawned process by id (also from another client, after ``from_id``)."""
        from sandboxkit._process import AsyncProcess

        return AsyncProcess(self, await self._process_call(lambda h: h.process_info(process_id)))

    # ----------------------------------------------------------------- ports
    async def tunnels(self) -> dict[int, Tunnel]:
        """How the caller's machine reaches each port given as ``ports=``: ``{port: Tunnel}``."""
        handle = self._live_handle()
        require_known(self._provider, Capability.PORTS, "tunnels()")  # type: ignore[arg-type]
        return await guarded(self._provider_name, handle.id, ErrorCode.PROVIDER_UNAVAILABLE, handle.tunnels())

    async def url(self, port: int) -> str:
        """A URL for ``port`` that a plain HTTP client on the caller's machine can open."""
        try:
            check_port(port)
        except ValueError as exc:
            raise SandboxError(ErrorCode.INVALID_ARGUMENT, str(exc), provider=self._provider_name) from None
        tunnels = await self.tunnels()
        if port not in tunnels:
            exposed = ", ".join(str(p) for p in sorted(tunnels)) or "none"
            raise SandboxError(
                ErrorCode.INVALID_ARGUMENT,
                f"port {port} is not exposed (exposed: {exposed}); create the sandbox with ports=[{port}]",
                provider=self._provider_name,
                sandbox_id=self.id,
            )
        return tunnels[port].url

    async def wait_for_port(self, port: int, *, timeout: float = 30.0) -> None:
        """Return once something listens on TCP ``port`` inside the sandbox; COMMAND_TIMEOUT after ``timeout``.

        It probes from inside the sandbox, so it works for any port, exposed or not.
        """
        try:
            check_port(port)
        except ValueError as exc:
            raise SandboxError(ErrorCode.INVALID_ARGUMENT, str(exc), provider=self._provider_name) from None
        if not (isinstance(timeout, int | float) and timeout > 0):
            raise SandboxError(ErrorCode.INVALID_ARGUMENT, f"timeout must be a positive number, got {timeout!r}")
        deadline = anyio.current_time() + timeout
        while True:
            left = deadline - anyio.current_time()
            probe = probe_argv(port, min(left, 5.0))
            if (await self.execute(probe, timeout=max(left, 0.1) + 30)).exit_code == 0:
                return
            if anyio.current_time() >= deadline:
                raise SandboxError(
                    ErrorCode.COMMAND_TIMEOUT,
                    f"nothing listened on port {port} inside the sandbox within {timeout:g}s; "
                    "check that the server started (and binds 0.0.0.0 to be reachable through a tunnel)",
                    provider=self._provider_name,
                    sandbox_id=self.id,
                )

    # ----------------------------------------------------------------- snapshots
    async def snapshot(self, *, ttl: float | None = SNAPSHOT_TTL) -> Snapshot:
        """Save the sandbox's filesystem; it keeps running unchanged. ``Sandbox.create(snapshot=snap)``
        starts new sandboxes from it. After ``ttl`` seconds (None: never) ``gc`` may reap it."""
        from sandboxkit._snapshot import Snapshot

        handle = self._live_handle()
        provider = self._provider
        assert provider is not None
        require_known(provider, Capability.SNAPSHOTS, "snapshot()")
        if ttl is not None and not (isinstance(ttl, int | float) and ttl > 0):
            raise SandboxError(
                ErrorCode.INVALID_ARGUMENT, f"ttl must be a positive number of seconds or None, got {ttl!r}"
            )
        labels = {**env_labels(), **(self._spec.labels if self._spec is not None else {})}
        info = await guarded(
            provider.name,
            handle.id,
            ErrorCode.PROVIDER_UNAVAILABLE,
            handle.snapshot(labels=labels, ttl=None if ttl is None else float(ttl)),
        )
        return Snapshot.from_info(info, provider.auth or None)


def _check_items(items: Any, call: str, shape: str, check: Callable[[Any], str | None]) -> None:
    """INVALID_ARGUMENT unless ``items`` is a list/tuple whose every item passes ``check`` (None: fine)."""
    if isinstance(items, str | bytes) or not isinstance(items, Sequence):
        raise SandboxError(ErrorCode.INVALID_ARGUMENT, f"{call} takes {shape}; got {type(items).__name__}")
    for i, item in enumerate(items):
        problem = check(item)
        if problem is not None:
            raise SandboxError(ErrorCode.INVALID_ARGUMENT, f"{call} takes {shape}; item {i} {problem}")


def _path_item(path: Any) -> str | None:
    return None if isinstance(path, str) else f"is a {type(path).__name__}, not a str path"


def _pair(item: Any) -> str | None:
    if isinstance(item, str | bytes) or not isinstance(item, Sequence) or len(item) != 2:
        return f"is a {type(item).__name__}, not a (path, content) pair"
    if not isinstance(item[0], str):
        return f"has a path of type {type(item[0]).__name__}; give a str"
    if not isinstance(item[1], str | bytes | bytearray | memoryview):
        return f"has content of type {type(item[1]).__name__}; give str or bytes"
    return None


def _auth_only(auth: Mapping[str, str] | None, unknown: Mapping[str, Any], what: str) -> Mapping[str, str] | None:
    """``auth`` when no other keyword was given; INVALID_ARGUMENT naming a misspelled one."""
    if unknown:
        names = ", ".join(sorted(unknown))
        raise SandboxError(
            ErrorCode.INVALID_ARGUMENT,
            f"{what}() got unknown keyword argument(s): {names}; it takes auth={{...}} for credentials",
        )
    return auth


def _raise_unless_file_errors(errors: Sequence[SandboxError | None]) -> None:
    """A batch reports per-file failures; a gone sandbox or an outage is not one of them: raise it."""
    for err in errors:
        if err is not None and err.code not in (ErrorCode.FILE_OPERATION_FAILED, ErrorCode.INVALID_ARGUMENT):
            raise err


def _file_kind(err: SandboxError | None) -> Any:
    if err is None:
        return None
    if isinstance(err, FileOperationError) and err.kind:
        return err.kind
    return "invalid_path" if err.code == ErrorCode.INVALID_ARGUMENT else "permission_denied"


def _plain_auth(spec: SandboxSpec) -> dict[str, str] | None:
    if not spec.auth:
        return None
    return {k: v.get_secret_value() for k, v in spec.auth.items()}


def _provider_options(provider: Provider, value: Any) -> BaseModel:
    if isinstance(value, provider.options_type):
        return value
    if value is not None and not isinstance(value, Mapping | BaseModel):
        raise SandboxError(
            ErrorCode.INVALID_ARGUMENT,
            f"provider_options must be a dict or {provider.options_type.__name__}, got {type(value).__name__}",
        )
    raw = value.model_dump() if isinstance(value, BaseModel) else dict(value or {})
    try:
        return provider.options_type.model_validate(raw)
    except ValidationError as exc:
        raise validation_error(exc, f"{provider.name} provider_option") from None


async def _quiet(call: Awaitable[Any]) -> None:
    try:
        await call
    except Exception:
        pass
