"""inspect_ai sandbox environment ``"sandboxkit"``: an eval's samples run in sandboxkit sandboxes on any provider.

    Task(..., sandbox=("sandboxkit", {"provider": "docker", "image": "python:3.12-slim"}))

The config takes every ``Sandbox.create`` option (see :class:`SandboxkitConfig`). Each sample gets
a fresh sandbox, closed when the sample ends; ``inspect sandbox cleanup sandboxkit`` removes any
left behind. Calls behave as inspect's own docker sandbox does: per-stream exec output keeps the
last 10 MiB (``INSPECT_SANDBOX_MAX_EXEC_OUTPUT_SIZE``), reads over 100 MiB raise
``OutputLimitExceededError``, and failures raise the standard exceptions inspect documents.
Registered through the ``inspect_ai`` entry point of the ``sandboxkit`` distribution.
"""

from __future__ import annotations

import asyncio
import errno
import json
import os
import posixpath
import re
import shlex
import sys
from typing import Any, ClassVar, Literal, Union, overload

import anyio
from inspect_ai.util import (
    ExecResult,
    OutputLimitExceededError,
    SandboxConnection,
    SandboxEnvironment,
    SandboxEnvironmentConfigType,
    SandboxEnvironmentLimits,
    SandboxUnavailableError,
    SandboxUserUnsupportedError,
    sandboxenv,
)
from inspect_ai.util._sandbox.environment import HostMapping, PortMapping
from pydantic import Field, model_validator

from sandboxkit._admin import aprovider_capabilities
from sandboxkit._async_sandbox import AsyncSandbox, env_labels
from sandboxkit._capabilities import Capability
from sandboxkit._errors import (
    CapabilityNotSupportedError,
    CommandTimeoutError,
    ErrorCode,
    FileOperationError,
    SandboxError,
)
from sandboxkit._registry import providers
from sandboxkit._spec import SandboxSpec

__all__ = ["INSPECT_LABEL", "SandboxkitConfig", "SandboxkitSandboxEnvironment"]

#: Label (``key=value``) carried by every sandbox this integration creates; ``cli_cleanup`` finds them by it.
INSPECT_LABEL = ("inspect", "1")
#: Label key naming the task a sandbox belongs to.
TASK_LABEL = "inspect_task"
#: Default lifetime of a sample's sandbox, seconds (a backstop; inspect's own limits end samples).
DEFAULT_LIFETIME = 4 * 3600.0

_NOT_ACCEPTED = ("name", "auth", "labels")
_STAT = "stat -L -c '%F|%s|%a' -- \"$1\""


class SandboxkitConfig(SandboxSpec):
    """Config of a ``"sandboxkit"`` sandbox: ``provider`` plus any ``Sandbox.create`` option.

    Differences from ``Sandbox.create``: ``timeout`` (the sandbox's lifetime) defaults to 4
    hours; ``block_network`` defaults to blocking the network when the provider can, as inspect's
    default docker sandbox does; ``name`` (samples run side by side), ``auth`` (it would be written
    to the eval log; providers read their credentials from the environment) and ``labels`` are not
    accepted.
    """

    #: provider name (default: $SANDBOXKIT_PROVIDER, else docker)
    provider: str | None = None
    timeout: float = Field(DEFAULT_LIFETIME, gt=0)
    block_network: bool | None = None  # type: ignore[assignment]

    @model_validator(mode="after")
    def _inspect_rules(self) -> SandboxkitConfig:
        for field, why in (
            ("name", "sandbox names are unique, and samples run side by side"),
            ("auth", "credentials would be written to the eval log; set the provider's environment variables"),
            ("labels", "sandboxkit sets the labels of eval sandboxes itself"),
        ):
            if getattr(self, field):  # the eval log stores every field, unset ones empty
                raise ValueError(f"{field!r} is not accepted in a sandboxkit eval config: {why}")
        return self

    def __hash__(self) -> int:
        # inspect keys its caches by the sandbox spec, config included; the dict fields need this
        return hash(json.dumps(self.model_dump(), sort_keys=True, default=repr))

    def create_options(self) -> dict[str, Any]:
        """The ``Sandbox.create`` options of this config (``block_network`` is decided per provider)."""
        return {k: getattr(self, k) for k in SandboxSpec.model_fields if k not in ("block_network", *_NOT_ACCEPTED)}


@sandboxenv(name="sandboxkit")
class SandboxkitSandboxEnvironment(SandboxEnvironment):
    """One sample's sandbox, on whichever sandboxkit provider the config names."""

    #: sandboxes still open, by task name (closed by task_cleanup if their samples did not)
    _open: ClassVar[dict[str, set[AsyncSandbox]]] = {}

    def __init__(self, sandbox: AsyncSandbox, working_dir: str) -> None:
        super().__init__()
        self.sandbox = sandbox
        self.working_dir = working_dir

    # ------------------------------------------------------------ lifecycle
    @classmethod
    def config_deserialize(cls, config: dict[str, Any]) -> SandboxkitConfig:
        return SandboxkitConfig(**config)

    @classmethod
    def default_concurrency(cls) -> int | None:
        # as inspect's docker sandbox: two per CPU; remote providers take more with --max-sandboxes
        return 2 * (os.cpu_count() or 1)

    @classmethod
    async def task_init(cls, task_name: str, config: SandboxEnvironmentConfigType | None) -> None:
        # fail before any sample starts: bad options, unknown or broken provider
        await aprovider_capabilities(_config(config).provider)

    @classmethod
    async def sample_init(
        cls, task_name: str, config: SandboxEnvironmentConfigType | None, metadata: dict[str, str]
    ) -> dict[str, SandboxEnvironment]:
        settings = _config(config)
        capabilities = await aprovider_capabilities(settings.provider)
        options = settings.create_options()
        if settings.block_network is not None:
            options["block_network"] = settings.block_network
        elif Capability.NETWORK_BLOCK in capabilities and not settings.ports:  # ports need a network
            options["block_network"] = True
        options["labels"] = {INSPECT_LABEL[0]: INSPECT_LABEL[1], TASK_LABEL: _label_value(task_name)}
        sandbox = await AsyncSandbox.create(settings.provider, **options)
        try:
            working_dir = settings.workdir or await _pwd(sandbox)
        except BaseException:
            with anyio.CancelScope(shield=True):
                await sandbox.close()
            raise
        cls._open.setdefault(task_name, set()).add(sandbox)
        return {"default": cls(sandbox, working_dir)}

    @classmethod
    async def sample_cleanup(
        cls,
        task_name: str,
        config: SandboxEnvironmentConfigType | None,
        environments: dict[str, SandboxEnvironment],
        interrupted: bool,
    ) -> None:
        for environment in environments.values():
            if isinstance(environment, SandboxkitSandboxEnvironment):
                await _close(environment.sandbox)
                cls._open.get(task_name, set()).discard(environment.sandbox)

    @classmethod
    async def task_cleanup(cls, task_name: str, config: SandboxEnvironmentConfigType | None, cleanup: bool) -> None:
        left = cls._open.pop(task_name, set())
        if not cleanup:
            for sandbox in left:
                print(
                    f"sandbox {sandbox.id} ({sandbox.provider}) left running; remove it with "
                    f"`inspect sandbox cleanup sandboxkit {sandbox.provider}:{sandbox.id}`",
                    file=sys.stderr,
                )
            return
        for sandbox in left:
            await _close(sandbox)

    @classmethod
    async def cli_cleanup(cls, id: str | None) -> None:
        """``inspect sandbox cleanup sandboxkit [PROVIDER:ID]``: remove eval sandboxes left running.

        Without an id: every eval sandbox of every provider that can list its sandboxes (only those
        that also carry ``$SANDBOXKIT_LABELS``, when it is set).
        """
        if id:
            provider, _, sandbox_id = id.rpartition(":")
            await (await AsyncSandbox.from_id(sandbox_id, provider or None)).close()
            print(f"removed {id}")
            return
        for status in providers():
            if not status.ok:
                continue
            try:
                found = await AsyncSandbox.list(status.name, labels={**env_labels(), **dict([INSPECT_LABEL])})
            except SandboxError as exc:
                if exc.code != ErrorCode.CAPABILITY_NOT_SUPPORTED:
                    print(f"{status.name}: cannot list sandboxes ({exc.message})", file=sys.stderr)
                continue
            for info in found:
                try:
                    await (await AsyncSandbox.from_id(info.id, status.name)).close()
                    print(f"removed {status.name}:{info.id}")
                except SandboxError as exc:
                    if exc.code != ErrorCode.SANDBOX_NOT_FOUND:
                        print(f"{status.name}:{info.id}: {exc.message}", file=sys.stderr)

    # ------------------------------------------------------------ commands
    async def exec(
        self,
        cmd: list[str],
        input: str | bytes | None = None,
        cwd: str | None = None,
        env: dict[str, str] | None = None,
        user: str | None = None,
        timeout: int | None = None,
        timeout_retry: bool = True,
        concurrency: bool = True,
    ) -> ExecResult[str]:
        limit = SandboxEnvironmentLimits.MAX_EXEC_OUTPUT_SIZE
        tails = {"stdout": _Tail(limit), "stderr": _Tail(limit)}
        options: dict[str, Any] = {
            "cwd": self._path(cwd) if cwd else self.working_dir,
            "env": env,
            "stdin": input,
            "user": user,
            "timeout": timeout,
        }
        try:
            if Capability.STREAMING in self.sandbox.capabilities and _on_asyncio():
                stream = self.sandbox.stream(list(cmd), max_output=0, **options)
                async for chunk in stream:
                    tails[chunk.stream].add(chunk.data)
                assert stream.result is not None
                code = stream.result.exit_code
            else:
                result = await self.sandbox.execute(list(cmd), max_output=2 * limit, **options)
                tails["stdout"].add(result.stdout_bytes)
                tails["stderr"].add(result.stderr_bytes)
                code = result.exit_code
        except CommandTimeoutError as exc:
            error = TimeoutError(f"Command timed out after {timeout} seconds")
            if exc.result is not None:  # kept by execute(); stream() handed the chunks to the tails
                tails["stdout"].add(exc.result.stdout_bytes)
                tails["stderr"].add(exc.result.stderr_bytes)
            partial = tails["stdout"].text() + tails["stderr"].text()
            if partial:
                error.truncated_output = partial  # type: ignore[attr-defined]
            raise error from None
        except CapabilityNotSupportedError as exc:
            if user is not None and "user" in exc.message:
                raise SandboxUserUnsupportedError(exc.message) from None
            raise
        except SandboxError as exc:
            result_ = getattr(exc, "result", None)
            if exc.code == ErrorCode.RESOURCE_LIMIT_EXCEEDED and result_ is not None:
                # an OOM kill ends the command as docker reports it: exit 137 with what it printed
                tails["stdout"].add(result_.stdout_bytes)
                tails["stderr"].add(result_.stderr_bytes)
                code = 137
            elif exc.code in (ErrorCode.SANDBOX_NOT_FOUND, ErrorCode.PROVIDER_UNAVAILABLE):
                raise SandboxUnavailableError(f"The sandbox is not running and cannot execute: {exc.message}") from None
            else:
                raise
        stdout, stderr = tails["stdout"].text(), tails["stderr"].text()
        if code == 126 and cmd and _exec_refused(cmd[0], stdout + stderr):
            raise PermissionError(
                f"Permission denied executing command: {shlex.join(cmd)}: {(stdout + stderr).strip()}"
            )
        return ExecResult(success=code == 0, returncode=code, stdout=stdout, stderr=stderr)

    # ------------------------------------------------------------ files
    async def write_file(self, file: str, contents: str | bytes) -> None:
        path = self._path(file)
        try:
            await self.sandbox.write_file(path, contents)
        except FileOperationError as exc:
            raise _os_error(exc, file, writing=True) from None

    @overload
    async def read_file(self, file: str, text: Literal[True] = True) -> str: ...

    @overload
    async def read_file(self, file: str, text: Literal[False]) -> bytes: ...

    async def read_file(self, file: str, text: bool = True) -> Union[str, bytes]:  # noqa: UP007
        if posixpath.basename(file.rstrip("/")) in (".", ".."):
            raise IsADirectoryError(errno.EISDIR, "Is a directory.", file)
        path = self._path(file)
        await self._check_readable(path, file)
        try:
            data = await self.sandbox.read_file(path)
        except FileOperationError as exc:
            raise _os_error(exc, file, writing=False) from None
        if len(data) > SandboxEnvironmentLimits.MAX_READ_FILE_SIZE:
            raise _read_limit_error()
        return data.decode("utf-8") if text else data

    async def _check_readable(self, path: str, original: str) -> None:
        """What inspect's docker sandbox checks before copying a file out: type, size, owner read bit."""
        result = await self.sandbox.execute(["sh", "-c", _STAT, "stat", path], timeout=60)
        if result.exit_code != 0:
            message = result.output.lower()
            if "no such file" in message or "not a directory" in message:
                raise FileNotFoundError(errno.ENOENT, "No such file or directory.", original)
            if "permission denied" in message:
                raise PermissionError(errno.EACCES, "Permission denied.", original)
            return  # no usable stat in the image: the read itself reports what is wrong
        kind, size, mode = [*result.stdout.strip().split("|"), "", "", ""][:3]
        if kind == "directory":
            raise IsADirectoryError(errno.EISDIR, "Is a directory.", original)
        if "regular" not in kind:
            raise OSError(errno.EINVAL, "read_file did not find a regular file.", original)
        if size.isdigit() and int(size) > SandboxEnvironmentLimits.MAX_READ_FILE_SIZE:
            raise _read_limit_error()
        if mode and not int(mode, 8) & 0o400:
            raise PermissionError(errno.EACCES, "Permission denied.", original)

    def _path(self, file: str) -> str:
        return posixpath.normpath(file if file.startswith("/") else posixpath.join(self.working_dir, file))

    # ------------------------------------------------------------ extras
    async def connection(self, *, user: str | None = None) -> SandboxConnection:
        """A shell command for the sandbox (``sandboxkit shell`` where the provider has terminals) and its ports."""
        capabilities = self.sandbox.capabilities
        if {Capability.PROCESSES, Capability.PTY} <= capabilities:
            where = ["--provider", self.sandbox.provider, *(["--user", user] if user else [])]
            command = ["sandboxkit", "shell", *where, self.sandbox.id]
        elif self.sandbox.provider == "docker":
            command = ["docker", "exec", "-it", *(["--user", user] if user else []), self.sandbox.id, "sh", "-l"]
        else:
            raise NotImplementedError(f"no shell connection for provider {self.sandbox.provider!r}")
        ports = None
        if Capability.PORTS in capabilities:
            tunnels = await self.sandbox.tunnels()
            ports = [
                PortMapping(
                    container_port=port, protocol="tcp", mappings=[HostMapping(host_ip=t.host, host_port=t.host_port)]
                )
                for port, t in sorted(tunnels.items())
            ] or None
        return SandboxConnection(type="sandboxkit", command=shlex.join(command), ports=ports, container=self.sandbox.id)

    def default_polling_interval(self) -> float:
        return 0.2


class _Tail:
    """The last ``limit`` bytes of a stream (older output is dropped, as inspect's docker sandbox does)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.data = bytearray()

    def add(self, chunk: bytes) -> None:
        self.data += chunk
        if len(self.data) > 2 * self.limit:
            del self.data[: len(self.data) - self.limit]

    def text(self) -> str:
        return bytes(self.data[-self.limit :] if len(self.data) > self.limit else self.data).decode(errors="replace")


async def _close(sandbox: AsyncSandbox) -> None:
    """Close, even while cancelled; a sandbox that is already gone is fine, other failures are reported."""
    with anyio.CancelScope(shield=True):
        try:
            await sandbox.close()
        except SandboxError as exc:
            if exc.code != ErrorCode.SANDBOX_NOT_FOUND:
                print(f"could not close sandbox {sandbox.provider}:{sandbox.id}: {exc.message}", file=sys.stderr)


def _config(config: SandboxEnvironmentConfigType | None) -> SandboxkitConfig:
    if config is None:
        return SandboxkitConfig.model_validate({})
    if isinstance(config, SandboxkitConfig):
        return config
    if isinstance(config, dict):
        return SandboxkitConfig(**config)
    raise ValueError(
        f"the sandboxkit sandbox takes a config dict such as {{'provider': 'docker'}}, got {type(config).__name__}: "
        f"{config!r}"
    )


def _label_value(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", text)[:63] or "task"


async def _pwd(sandbox: AsyncSandbox) -> str:
    result = await sandbox.execute(["pwd"], timeout=60)
    where = result.stdout.strip()
    return where if result.exit_code == 0 and where.startswith("/") else "/"


def _exec_refused(program: str, output: str) -> bool:
    """The runtime (not the command) refused to start ``program``: runc's "permission denied"."""
    return re.search(rf'exec: "?{re.escape(program)}"?: permission denied', output, re.IGNORECASE) is not None


def _read_limit_error() -> OutputLimitExceededError:
    return OutputLimitExceededError(limit_str=SandboxEnvironmentLimits.MAX_READ_FILE_SIZE_STR, truncated_output=None)


def _os_error(exc: FileOperationError, file: str, *, writing: bool) -> OSError:
    if exc.kind == "file_not_found":
        return FileNotFoundError(errno.ENOENT, "No such file or directory.", file)
    if exc.kind == "permission_denied":
        return PermissionError(errno.EACCES, "Permission denied.", file)
    if exc.kind == "is_directory":
        what = "Failed to write file: it is a directory already." if writing else "Is a directory."
        return IsADirectoryError(errno.EISDIR, what, file)
    return OSError(errno.EINVAL, exc.message, file)


def _on_asyncio() -> bool:
    """stream() needs asyncio; under trio the call falls back to execute()."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True
