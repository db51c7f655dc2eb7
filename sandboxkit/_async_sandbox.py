"""AsyncSandbox: the user-facing async facade over one provider's SandboxHandle."""

from __future__ import annotations

import builtins
import codecs
import os
import posixpath
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from typing import Any, TypeVar, final

import anyio
from pydantic import BaseModel, ValidationError

from sandboxkit._capabilities import Capability
from sandboxkit._errors import (
    ErrorCode,
    FileOperationError,
    SandboxError,
    _ResultError,
)
from sandboxkit._network import NetworkPolicy, as_policy, check_secrets
from sandboxkit._provider import OutputCallback, Provider, SandboxHandle
from sandboxkit._registry import default_provider_name, registry
from sandboxkit._spec import SandboxSpec, build_spec, check_env, validation_error
from sandboxkit._types import (
    ExecRequest,
    ExecResult,
    FileDownloadResult,
    FileUploadResult,
    NetworkEvent,
    OutputChunk,
    SandboxInfo,
    StreamName,
)

T = TypeVar("T")

#: Default cap on the output one command keeps (stdout and stderr together).
DEFAULT_MAX_OUTPUT = 10 * 1024 * 1024
#: How long past its timeout the facade waits for a provider to report the kill itself.
TIMEOUT_GRACE = 10.0
#: Env var with labels added to every sandbox this process creates: ``k=v,k2=v2``.
LABELS_ENV = "SANDBOXKIT_LABELS"

Command = str | Sequence[str]


def env_labels() -> dict[str, str]:
    """Labels from ``$SANDBOXKIT_LABELS``."""
    pairs = (p.partition("=") for p in os.environ.get(LABELS_ENV, "").split(",") if "=" in p)
    return {k.strip(): v.strip() for k, _, v in pairs if k.strip()}


_providers: dict[tuple[str, tuple[tuple[str, str], ...]], Provider] = {}


def get_provider(name: str | None, auth: Mapping[str, str] | None = None) -> Provider:
    """The shared Provider instance for ``name`` and these credentials."""
    resolved = name or default_provider_name()
    key = (resolved, tuple(sorted((auth or {}).items())))
    if key not in _providers:
        _providers[key] = registry.provider_class(resolved)(auth=auth)
    return _providers[key]


def require(provider: Provider, capability: Capability, what: str) -> None:
    """Raise CAPABILITY_NOT_SUPPORTED unless ``provider`` declares ``capability``."""
    if capability not in provider.capabilities:
        raise SandboxError(
            ErrorCode.CAPABILITY_NOT_SUPPORTED,
            f"provider {provider.name!r} does not support {what} (capability {capability.value!r}); "
            "leave the option out or pick a provider that declares it",
            provider=provider.name,
        )


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


async def guarded(provider: str, sandbox_id: str | None, fallback: ErrorCode, call: Awaitable[T]) -> T:
    """Await a provider call; any non-SandboxError escaping the provider becomes ``fallback``."""
    try:
        return await call
    except SandboxError as exc:
        exc.provider = exc.provider or provider
        exc.sandbox_id = exc.sandbox_id or sandbox_id
        raise
    except anyio.get_cancelled_exc_class():
        raise
    except Exception as exc:
        raise SandboxError(
            fallback,
            f"provider {provider!r} failed unexpectedly: {type(exc).__name__}: {exc}",
            provider=provider,
            sandbox_id=sandbox_id,
        ) from exc


def _absolute(path: str, what: str = "path") -> str:
    if not isinstance(path, str) or not path.startswith("/") or "\x00" in path:
        raise SandboxError(
            ErrorCode.INVALID_ARGUMENT, f"{what} must be an absolute path inside the sandbox, got {path!r}"
        )
    return posixpath.normpath(path)


def _as_bytes(data: str | bytes | bytearray | memoryview, what: str) -> bytes:
    if isinstance(data, str):
        return data.encode()
    if isinstance(data, bytes | bytearray | memoryview):
        return bytes(data)
    raise SandboxError(ErrorCode.INVALID_ARGUMENT, f"{what} must be str or bytes, got {type(data).__name__}")


class _Collector:
    """Keeps a command's output up to a cap, in arrival order, and forwards chunks live."""

    def __init__(self, cap: int, forward: Callable[[OutputChunk], Awaitable[None]] | None) -> None:
        self.cap, self.forward = cap, forward
        self.kept = 0
        self.truncated = False
        self.parts: dict[StreamName, list[bytes]] = {"stdout": [], "stderr": []}
        self.merged: builtins.list[bytes] = []
        self.decoders = {s: codecs.getincrementaldecoder("utf-8")("replace") for s in ("stdout", "stderr")}

    async def __call__(self, stream: StreamName, data: bytes) -> None:
        if not data:
            return
        room = self.cap - self.kept
        if room > 0:
            piece = data[:room]
            self.parts[stream].append(piece)
            self.merged.append(piece)
            self.kept += len(piece)
        if len(data) > max(room, 0):
            self.truncated = True
        if self.forward is not None:
            text = self.decoders[stream].decode(data)
            await self.forward(OutputChunk(stream=stream, data=data, text=text))

    def result(self, exit_code: int) -> ExecResult:
        return ExecResult(
            exit_code=exit_code,
            stdout_bytes=b"".join(self.parts["stdout"]),
            stderr_bytes=b"".join(self.parts["stderr"]),
            output_bytes=b"".join(self.merged),
            truncated=self.truncated,
        )


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
        provider = get_provider(self._provider_name, _plain_auth(spec))
        for capability, what in _spec_capabilities(spec):
            require(provider, capability, what)
        if spec.network is not None:
            check_secrets(spec.network)
        provider_options = _provider_options(provider, spec.provider_options)
        handle = await guarded(
            provider.name, None, ErrorCode.SANDBOX_CREATION_FAILED, provider.create(spec, provider_options)
        )
        try:
            if spec.initial_files:
                files = [(p, _as_bytes(d, "initial_files value")) for p, d in spec.initial_files.items()]
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
    async def from_id(cls, sandbox_id: str, provider: str | None = None, **auth: Any) -> AsyncSandbox:
        """Reconnect to a live sandbox by id; SANDBOX_NOT_FOUND when it is gone."""
        prov = get_provider(provider, auth.get("auth"))
        require(prov, Capability.RECONNECT, "from_id")
        if not isinstance(sandbox_id, str) or not sandbox_id:
            raise SandboxError(ErrorCode.INVALID_ARGUMENT, "sandbox_id must be a non-empty string")
        handle = await guarded(prov.name, sandbox_id, ErrorCode.SANDBOX_NOT_FOUND, prov.from_id(sandbox_id))
        return cls._attach(prov, handle)

    @classmethod
    async def from_name(cls, app: str, name: str, provider: str | None = None, **auth: Any) -> AsyncSandbox:
        """Find a live sandbox by its app and name; SANDBOX_NOT_FOUND when none is running."""
        prov = get_provider(provider, auth.get("auth"))
        require(prov, Capability.NAMED, "from_name")
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
        **auth: Any,
    ) -> builtins.list[SandboxInfo]:
        """Live sandboxes of a provider, filtered by app and tags (all must match)."""
        prov = get_provider(provider, auth.get("auth"))
        require(prov, Capability.LIST, "list")
        if tags:
            require(prov, Capability.TAGS, "filtering by tags")
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
        """What this sandbox's provider declares."""
        return get_provider(self._provider_name).capabilities if self._provider is None else self._provider.capabilities

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
        if timeout is not None and not (isinstance(timeout, int | float) and timeout > 0):
            raise SandboxError(
                ErrorCode.INVALID_ARGUMENT, f"timeout must be a positive number of seconds, got {timeout!r}"
            )
        try:
            check_env(env or {})
        except ValueError as exc:
            raise SandboxError(ErrorCode.INVALID_ARGUMENT, str(exc)) from None
        provider = self._provider
        assert provider is not None
        if stdin is not None:
            require(provider, Capability.STDIN, "stdin=")
        if user is not None:
            require(provider, Capability.USER, "user=")
        return ExecRequest(
            argv=argv,
            cwd=None if cwd is None else _absolute(cwd, "cwd"),
            env=dict(env or {}),
            stdin=None if stdin is None else _as_bytes(stdin, "stdin"),
            user=None if user is None else str(user),
            timeout=None if timeout is None else float(timeout),
        )

    async def _run(
        self, request: ExecRequest, on_output: OutputCallback, collector: _Collector, check: bool
    ) -> ExecResult:
        handle = self._live_handle()
        provider = self._provider
        assert provider is not None
        call = guarded(provider.name, handle.id, ErrorCode.PROVIDER_UNAVAILABLE, handle.exec(request, on_output))
        outcome = None
        with anyio.move_on_after(None if request.timeout is None else request.timeout + TIMEOUT_GRACE):
            outcome = await call
        if outcome is None:
            raise _with_result(
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
            raise _with_result(
                SandboxError(
                    ErrorCode.COMMAND_TIMEOUT,
                    f"command ran past its timeout of {request.timeout:g}s; its process tree was killed "
                    "(the partial output is on .result)",
                    **where,
                ),
                result,
            )
        if outcome.oom_killed:
            raise _with_result(
                SandboxError(
                    ErrorCode.RESOURCE_LIMIT_EXCEEDED,
                    "a process of the command was killed for exceeding the sandbox's memory limit; "
                    "raise memory_mib or use less memory",
                    **where,
                ),
                result,
            )
        if check and result.exit_code != 0:
            raise _with_result(
                SandboxError(
                    ErrorCode.COMMAND_FAILED,
                    f"command exited with code {result.exit_code}: {result.output[-500:]}",
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
        collector = _Collector(max_output, None)
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
        require(self._provider, Capability.STREAMING, "stream()")  # type: ignore[arg-type]
        request = self._request(command, timeout=timeout, cwd=cwd, env=env, stdin=stdin, user=user)

        def start(forward: Callable[[OutputChunk], Awaitable[None]]) -> Awaitable[ExecResult]:
            collector = _Collector(max_output, forward)
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
            require(provider, Capability.CREDENTIAL_INJECTION, "NetworkPolicy(inject=)")
        require(provider, Capability.NETWORK_POLICY, "set_network")
        check_secrets(policy)
        await guarded(self._provider_name, handle.id, ErrorCode.PROVIDER_UNAVAILABLE, handle.set_network(policy))

    async def network_log(self) -> builtins.list[NetworkEvent]:
        """What the sandbox tried to reach, oldest first, allowed and denied (capability NETWORK_POLICY)."""
        handle = self._live_handle()
        require(self._provider or get_provider(self._provider_name), Capability.NETWORK_POLICY, "network_log")
        return await guarded(self._provider_name, handle.id, ErrorCode.PROVIDER_UNAVAILABLE, handle.network_log())

    # ----------------------------------------------------------------- files
    async def write_file(self, path: str, content: str | bytes) -> None:
        """Create or replace a file (parents are created). str is written as UTF-8."""
        handle = self._live_handle()
        data = _as_bytes(content, "content")
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
        handle = self._live_handle()
        results: builtins.list[FileUploadResult | None] = [None] * len(files)
        batch: builtins.list[tuple[int, str, bytes]] = []
        for i, (path, content) in enumerate(files):
            try:
                batch.append((i, _absolute(path), _as_bytes(content, "content")))
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


class AsyncExecStream:
    """Live output of one command; iterate it once. ``result`` is set when it ends."""

    def __init__(self, start: Callable[[Callable[[OutputChunk], Awaitable[None]]], Awaitable[ExecResult]]) -> None:
        self._start = start
        self.result: ExecResult | None = None

    def __aiter__(self) -> AsyncIterator[OutputChunk]:
        return self._chunks()

    async def _chunks(self) -> AsyncIterator[OutputChunk]:
        send, recv = anyio.create_memory_object_stream[OutputChunk](64)
        failure: builtins.list[BaseException] = []

        async def runner() -> None:
            async with send:
                try:
                    self.result = await self._start(send.send)
                except Exception as exc:
                    failure.append(exc)

        stopped_early = False
        async with anyio.create_task_group() as tg:
            tg.start_soon(runner)
            try:
                async with recv:
                    async for chunk in recv:
                        yield chunk
            except GeneratorExit:  # the consumer stopped iterating: stop the command too
                stopped_early = True
                tg.cancel_scope.cancel()
        if stopped_early:
            return
        if failure:
            raise failure[0]


def _with_result(err: SandboxError, result: ExecResult) -> SandboxError:
    if isinstance(err, _ResultError):
        err.with_result(result)
    else:
        err.result = result  # type: ignore[attr-defined]
    return err


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
