"""DockerCliProvider: each sandbox is a container, and every operation is one ``docker`` command.

The worked example of the conformance guide (conformance/README.md): a complete third-party
provider in one module, written against ``sandboxkit.spi`` only.
"""

from __future__ import annotations

import builtins
import datetime as dt
import io
import json
import math
import subprocess
import tarfile
import time
import uuid
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import anyio
from anyio.abc import ByteReceiveStream, ByteSendStream
from pydantic import BaseModel

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
    StreamName,
    file_error,
)

NAME = "dockercli"
#: Label on every container this provider makes; ``.app`` and ``.label.<key>`` hang off it.
MANAGED = "sandboxkit-dockercli"
DEFAULT_IMAGE = "sandboxkit/base:bookworm"
#: Every exec carries this env var; its descendants inherit it, so a timeout can kill them all.
MARKER = "DOCKERCLI_EXEC_ID"
_EACH = (
    "for p in /proc/[0-9]*; do "
    "grep -qxz '{marker}={token}' $p/environ 2>/dev/null && kill -{sig} ${{p#/proc/}} 2>/dev/null; done; "
)
_STATES = {"created": SandboxState.PENDING, "running": SandboxState.RUNNING, "exited": SandboxState.STOPPED}


# ------------------------------------------------------------ the one place docker errors become codes
def _error(stderr: str, sandbox_id: str | None = None) -> SandboxError:
    text = stderr.lower()
    gone = any(s in text for s in ("no such container", "no such object", "is not running", "removal of container"))
    code = ErrorCode.SANDBOX_NOT_FOUND if gone else ErrorCode.PROVIDER_UNAVAILABLE
    return SandboxError(code, f"docker: {stderr.strip()}", provider=NAME, sandbox_id=sandbox_id)


async def docker(*args: str, stdin: bytes | None = None, sandbox_id: str | None = None) -> bytes:
    """Run one docker command and return its stdout; a failure becomes the SandboxError it means."""
    try:
        result = await anyio.run_process(["docker", *args], input=stdin, check=False)
    except FileNotFoundError:
        raise SandboxError(
            ErrorCode.PROVIDER_UNAVAILABLE, "the `docker` command is not on PATH; install the docker CLI", provider=NAME
        ) from None
    if result.returncode != 0:
        raise _error(result.stderr.decode(errors="replace"), sandbox_id)
    return result.stdout


class DockerCliProvider(Provider):
    """Sandboxes as containers whose PID 1 is ``sleep <timeout>``: they end on time by themselves."""

    name: ClassVar[str] = NAME
    capabilities: ClassVar[frozenset[Capability]] = frozenset(
        {
            Capability.STDIN,
            Capability.STREAMING,
            Capability.LIST,
            Capability.RECONNECT,
            Capability.VOLUMES,
            Capability.NETWORK_BLOCK,
        }
    )

    async def create(self, spec: SandboxSpec, options: BaseModel) -> DockerCliSandbox:
        image = spec.image or DEFAULT_IMAGE
        try:
            await docker("image", "inspect", image)
        except SandboxError:
            raise SandboxError(
                ErrorCode.SANDBOX_CREATION_FAILED,
                f"image {image!r} is not present locally; `docker pull` or `docker load` it first",
                provider=NAME,
            ) from None
        args = ["create", "--init", "--rm", "--label", f"{MANAGED}=1", "--label", f"{MANAGED}.app={spec.app}"]
        for key, value in spec.labels.items():
            args += ["--label", f"{MANAGED}.label.{key}={value}"]
        for key, value in spec.env.items():
            args += ["--env", f"{key}={value}"]
        if spec.workdir:
            args += ["--workdir", spec.workdir]
        if spec.block_network:
            args += ["--network", "none"]
        for path, volume in spec.volumes.items():
            try:
                await docker("volume", "inspect", volume)
            except SandboxError:
                raise SandboxError(
                    ErrorCode.VOLUME_ERROR,
                    f"volume {volume!r} does not exist; create it first (`docker volume create {volume}`)",
                    provider=NAME,
                ) from None
            args += ["--mount", f"type=volume,source={volume},target={path}"]
        args += ["--entrypoint", "sleep", image, str(math.ceil(spec.timeout))]
        try:
            container_id = (await docker(*args)).decode().strip()
        except SandboxError as exc:
            raise SandboxError(ErrorCode.SANDBOX_CREATION_FAILED, exc.message, provider=NAME) from None
        sandbox = DockerCliSandbox(container_id, spec.app)
        try:
            await docker("start", container_id, sandbox_id=container_id)
        except BaseException:
            with anyio.CancelScope(shield=True):
                await sandbox.terminate()
            raise
        return sandbox

    async def from_id(self, sandbox_id: str) -> DockerCliSandbox:
        (info,) = await _inspect([sandbox_id])
        labels = info["Config"]["Labels"] or {}
        if labels.get(MANAGED) != "1" or info["State"]["Status"] != "running":
            raise SandboxError(
                ErrorCode.SANDBOX_NOT_FOUND, f"no running sandbox {sandbox_id!r}", provider=NAME, sandbox_id=sandbox_id
            )
        return DockerCliSandbox(info["Id"], labels.get(f"{MANAGED}.app", ""))

    async def list(
        self,
        *,
        app: str | None = None,
        tags: Mapping[str, str] | None = None,
        labels: Mapping[str, str] | None = None,
    ) -> builtins.list[SandboxInfo]:
        filters = [f"label={MANAGED}=1", *(f"label={MANAGED}.label.{k}={v}" for k, v in (labels or {}).items())]
        if app is not None:
            filters.append(f"label={MANAGED}.app={app}")
        ids = (await docker("ps", "-q", "--no-trunc", *(f"--filter={f}" for f in filters))).decode().split()
        infos = await _inspect(ids) if ids else []
        return [
            SandboxInfo(
                id=info["Id"],
                name=None,
                app=(info["Config"]["Labels"] or {}).get(f"{MANAGED}.app", ""),
                tags={},
                state=_STATES.get(info["State"]["Status"], SandboxState.UNKNOWN),
                created_at=dt.datetime.fromisoformat(info["Created"][:19]).replace(tzinfo=dt.UTC),
                provider=NAME,
            )
            for info in infos
            if info["State"]["Status"] == "running"
        ]


async def _inspect(ids: Sequence[str]) -> builtins.list[dict[str, Any]]:
    found: builtins.list[dict[str, Any]] = json.loads(await docker("inspect", *ids))
    return found


class DockerCliSandbox(SandboxHandle):
    """One container."""

    def __init__(self, container_id: str, app: str) -> None:
        self.id = container_id
        self.app = app

    async def status(self) -> SandboxState:
        try:
            out = await docker("inspect", "-f", "{{.State.Status}}", self.id, sandbox_id=self.id)
        except SandboxError as exc:
            if exc.code == ErrorCode.SANDBOX_NOT_FOUND:
                return SandboxState.TERMINATED
            raise
        return _STATES.get(out.decode().strip(), SandboxState.UNKNOWN)

    async def _gone(self) -> SandboxError | None:
        """SANDBOX_NOT_FOUND when the container no longer runs, else None."""
        if await self.status() == SandboxState.RUNNING:
            return None
        return SandboxError(
            ErrorCode.SANDBOX_NOT_FOUND, "the sandbox is no longer running", provider=NAME, sandbox_id=self.id
        )

    async def terminate(self) -> None:
        try:
            await docker("rm", "-f", self.id, sandbox_id=self.id)
        except SandboxError as exc:
            if exc.code != ErrorCode.SANDBOX_NOT_FOUND:
                raise

    # ------------------------------------------------------------ commands
    async def exec(self, request: ExecRequest, on_output: OutputCallback) -> ExecExit:
        gone = await self._gone()
        if gone:
            raise gone
        token = uuid.uuid4().hex
        args = ["docker", "exec", *(["-i"] if request.stdin is not None else [])]
        for key, value in {**request.env, MARKER: token}.items():
            args += ["--env", f"{key}={value}"]
        if request.cwd:
            args += ["--workdir", request.cwd]
        args += [self.id, *request.argv]
        stdin = subprocess.PIPE if request.stdin is not None else subprocess.DEVNULL
        timed_out = finished = False
        process = await anyio.open_process(args, stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            async with anyio.create_task_group() as tg:
                if request.stdin is not None and process.stdin is not None:
                    tg.start_soon(_feed, process.stdin, request.stdin)
                assert process.stdout is not None and process.stderr is not None
                tg.start_soon(_pump, process.stdout, "stdout", on_output)
                tg.start_soon(_pump, process.stderr, "stderr", on_output)
                with anyio.move_on_after(request.timeout) as deadline:
                    await process.wait()
                if deadline.cancelled_caught:
                    timed_out = True
                    await self._kill(token)
                    with anyio.move_on_after(5):
                        await process.wait()
                    tg.cancel_scope.cancel()
            finished = True
        finally:
            if not finished:  # cancelled from outside: the command must not outlive the call
                with anyio.CancelScope(shield=True):
                    await self._kill(token)
            if process.returncode is None:
                process.kill()
            await process.aclose()
        code = process.returncode if process.returncode is not None else -1
        if code != 0 and not timed_out:
            # a container that reached its lifetime kills its commands (137) and still reads as
            # running for a moment: that code gets a few more looks
            for pause in (0.0, 0.1, 0.2, 0.4, 0.8) if code == 137 else (0.0,):
                await anyio.sleep(pause)
                gone = await self._gone()
                if gone:
                    raise gone
        return ExecExit(exit_code=137 if timed_out and code in (0, -1) else code, timed_out=timed_out)

    async def _kill(self, token: str) -> None:
        """Stop, then kill, every process that carries this exec's marker (the whole tree)."""
        each = {sig: _EACH.format(marker=MARKER, token=token, sig=sig) for sig in ("STOP", "KILL")}
        try:
            await docker("exec", self.id, "sh", "-c", each["STOP"] + each["KILL"] + "true", sandbox_id=self.id)
        except SandboxError:
            pass  # the sandbox is gone, and its processes with it

    # ------------------------------------------------------------ files
    async def write_file(self, path: str, data: bytes) -> None:
        (error,) = await self.write_files([(path, data)])
        if error is not None:
            raise error

    async def write_files(self, files: Sequence[tuple[str, bytes]]) -> builtins.list[SandboxError | None]:
        if not files:
            return []
        if await self._put(files) is None:
            return [None] * len(files)
        return [await self._put([file]) for file in files]  # one failed the batch: find out which

    async def _put(self, files: Sequence[tuple[str, bytes]]) -> SandboxError | None:
        try:
            await docker("cp", "-", f"{self.id}:/", stdin=_tar(files), sandbox_id=self.id)
            return None
        except SandboxError as exc:
            gone = exc if exc.code == ErrorCode.SANDBOX_NOT_FOUND else await self._gone()
            if gone:
                raise gone from None
            text = exc.message.lower()
            kind = "is_directory" if "cannot overwrite directory" in text else "invalid_path"
            kind = "permission_denied" if "permission denied" in text else kind
            return file_error(kind, files[0][0], exc.message, provider=NAME, sandbox_id=self.id)

    async def read_file(self, path: str) -> bytes:
        try:
            archive = await docker("cp", "-L", f"{self.id}:{path}", "-", sandbox_id=self.id)
        except SandboxError as exc:
            gone = exc if exc.code == ErrorCode.SANDBOX_NOT_FOUND else await self._gone()
            if gone:
                raise gone from None
            raise file_error("file_not_found", path, exc.message, provider=NAME, sandbox_id=self.id) from None
        with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
            member = tar.next()
            if member is not None and member.isdir():
                raise file_error("is_directory", path, provider=NAME, sandbox_id=self.id)
            extracted = tar.extractfile(member) if member is not None else None
            if extracted is None:
                raise file_error("invalid_path", path, "not a regular file", provider=NAME, sandbox_id=self.id)
            return extracted.read()


def _tar(files: Sequence[tuple[str, bytes]]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path, data in files:
            info = tarfile.TarInfo(path.lstrip("/"))
            info.size, info.mode, info.mtime = len(data), 0o644, int(time.time())
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


async def _pump(stream: ByteReceiveStream, name: StreamName, on_output: OutputCallback) -> None:
    async for chunk in stream:
        await on_output(name, chunk)


async def _feed(stream: ByteSendStream, data: bytes) -> None:
    try:
        for start in range(0, len(data), 1 << 20):
            await stream.send(data[start : start + (1 << 20)])
        await stream.aclose()
    except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
        pass  # the command exited without reading all of it
