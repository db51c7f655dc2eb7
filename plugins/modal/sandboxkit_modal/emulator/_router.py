"""The emulated task command router: exec, its stdio and stdin, and the V2 entrypoint's stdio."""

from __future__ import annotations

import asyncio
from typing import Any, TypeVar

from grpclib import GRPCError, Status
from grpclib.server import Stream
from modal_proto import api_pb2, task_command_router_grpc
from modal_proto import task_command_router_pb2 as tcr
from pydantic import ValidationError

from sandboxkit import NetworkPolicy, SandboxError
from sandboxkit_modal.emulator._auth import Credentials
from sandboxkit_modal.emulator._fstools import FS_TOOLS, FsTool
from sandboxkit_modal.emulator._process import Command, Process, PtyCommand
from sandboxkit_modal.emulator._servicer import answer_unimplemented
from sandboxkit_modal.emulator._state import Backend, EmuSandbox, grpc_error, network_policy

R = TypeVar("R")
#: How long a wait on a timed-out exec is held: past the client's own deadline, so it reports -1 as Modal does.
TIMED_OUT_HOLD = 30.0


@answer_unimplemented
class TaskCommandRouter(task_command_router_grpc.TaskCommandRouterBase):
    """Runs execs in the sandbox's container; every call needs a JWT the control plane issued."""

    def __init__(self, backend: Backend, credentials: Credentials) -> None:
        self.backend = backend
        self.credentials = credentials

    async def _recv(self, stream: Stream[R, Any]) -> R:
        request = await stream.recv_message()
        self.credentials.check_bearer(stream.metadata or {})  # type: ignore[arg-type]
        assert request is not None
        return request

    def _process(self, task_id: str, exec_id: str) -> tuple[EmuSandbox, Process]:
        sandbox = self.backend.task(task_id)
        return sandbox, sandbox.process(exec_id)

    # ------------------------------------------------------------ network
    async def TaskSetNetworkAccess(
        self, stream: Stream[tcr.TaskSetNetworkAccessRequest, tcr.TaskSetNetworkAccessResponse]
    ) -> None:
        request = await self._recv(stream)
        box = self.backend.task(request.task_id).require_box()
        access = request.network_access
        if access.network_access_type != api_pb2.NetworkAccess.ALLOWLIST or box.network is None:
            raise GRPCError(
                Status.UNIMPLEMENTED,
                "the Modal emulator changes outbound allowlists only, on sandboxes created with one",
            )
        try:
            policy = NetworkPolicy.model_validate(network_policy(access))
        except ValidationError as exc:
            raise GRPCError(Status.INVALID_ARGUMENT, f"invalid outbound allowlist: {exc.errors()[0]['msg']}") from None
        try:
            await box.set_network(policy)
        except SandboxError as exc:
            raise grpc_error(exc) from None
        await stream.send_message(tcr.TaskSetNetworkAccessResponse())

    # ------------------------------------------------------------ exec
    async def TaskExecStart(self, stream: Stream[tcr.TaskExecStartRequest, tcr.TaskExecStartResponse]) -> None:
        request = await self._recv(stream)
        sandbox = self.backend.task(request.task_id)
        box = sandbox.require_box()
        if request.exec_id not in sandbox.execs:  # a retried start is a no-op
            if request.container_id:
                raise GRPCError(Status.UNIMPLEMENTED, "sidecar containers are not supported by the Modal emulator")
            argv = list(request.command_args)
            if not argv:
                raise GRPCError(Status.INVALID_ARGUMENT, "exec needs a command")
            process: Process
            if argv[0] == FS_TOOLS:
                process = FsTool(sandbox, box, argv[1] if len(argv) > 1 else "")
            elif request.HasField("pty_info") and request.pty_info.enabled:
                pty = request.pty_info
                env = {
                    **sandbox.env,
                    **self.backend.exec_env(request.secret_ids, request.secret_sources),
                    **({"TERM": pty.env_term} if pty.env_term else {}),
                    **dict(request.env),
                }
                process = PtyCommand(
                    sandbox,
                    box,
                    argv,
                    env=env,
                    workdir=request.workdir or None,
                    timeout=request.timeout_secs or None,
                    size=(pty.winsz_rows or 24, pty.winsz_cols or 80),
                )
            else:
                env = {
                    **sandbox.env,
                    **self.backend.exec_env(request.secret_ids, request.secret_sources),
                    **dict(request.env),
                }
                process = Command(
                    sandbox,
                    box,
                    argv,
                    env=env,
                    workdir=request.workdir or None,
                    timeout=request.timeout_secs or None,
                    fifo_path=f"/tmp/.modal-emulator-stdin-{request.exec_id}",
                )
            sandbox.add_process(request.exec_id, process)
        await stream.send_message(tcr.TaskExecStartResponse())

    async def TaskExecStdioRead(
        self, stream: Stream[tcr.TaskExecStdioReadRequest, tcr.TaskExecStdioReadResponse]
    ) -> None:
        request = await self._recv(stream)
        _, process = self._process(request.task_id, request.exec_id)
        process.trigger()
        stdout = request.file_descriptor == tcr.TASK_EXEC_STDIO_FILE_DESCRIPTOR_STDOUT
        async for chunk in (process.stdout if stdout else process.stderr).read_from(request.offset):
            await stream.send_message(tcr.TaskExecStdioReadResponse(data=chunk))

    async def TaskExecWait(self, stream: Stream[tcr.TaskExecWaitRequest, tcr.TaskExecWaitResponse]) -> None:
        request = await self._recv(stream)
        sandbox, process = self._process(request.task_id, request.exec_id)
        process.trigger()
        await process.done.wait()
        self._raise_if_lost(sandbox, process)
        if process.timed_out:  # Modal's client reports a timed-out exec as -1 once its own deadline passes
            await asyncio.sleep(TIMED_OUT_HOLD)
        await stream.send_message(tcr.TaskExecWaitResponse(code=process.exit_code or 0))

    async def TaskExecPoll(self, stream: Stream[tcr.TaskExecPollRequest, tcr.TaskExecPollResponse]) -> None:
        request = await self._recv(stream)
        sandbox, process = self._process(request.task_id, request.exec_id)
        process.trigger()
        if process.done.is_set() and not process.timed_out:
            self._raise_if_lost(sandbox, process)
            await stream.send_message(tcr.TaskExecPollResponse(code=process.exit_code or 0))
        else:
            await stream.send_message(tcr.TaskExecPollResponse())

    @staticmethod
    def _raise_if_lost(sandbox: EmuSandbox, process: Process) -> None:
        if process.lost:
            raise GRPCError(Status.NOT_FOUND, f"Task {sandbox.task_id} has finished")

    async def TaskSnapshotFilesystem(
        self, stream: Stream[tcr.TaskSnapshotFilesystemRequest, tcr.TaskSnapshotFilesystemResponse]
    ) -> None:
        request = await self._recv(stream)
        if request.container_id:
            raise GRPCError(Status.UNIMPLEMENTED, "sidecar containers are not supported by the Modal emulator")
        ttl = None if request.ttl_seconds <= 0 else float(request.ttl_seconds)
        image_id = await self.backend.task(request.task_id).snapshot(ttl=ttl)
        await stream.send_message(tcr.TaskSnapshotFilesystemResponse(image_id=image_id))

    # ------------------------------------------------------------ stdin
    async def TaskExecStdinWrite(
        self, stream: Stream[tcr.TaskExecStdinWriteRequest, tcr.TaskExecStdinWriteResponse]
    ) -> None:
        request = await self._recv(stream)
        _, process = self._process(request.task_id, request.exec_id)
        await self._write(process, request.offset, request.data, request.eof)
        await stream.send_message(tcr.TaskExecStdinWriteResponse())

    async def TaskExecStdinWriteStream(
        self, stream: Stream[tcr.TaskExecStdinWriteStreamRequest, tcr.TaskExecStdinWriteStreamResponse]
    ) -> None:
        first = await self._recv(stream)
        _, process = self._process(first.start.task_id, first.start.exec_id)
        if first.start.offset != process.stdin_written:
            raise GRPCError(Status.FAILED_PRECONDITION, "stdin offset does not match what was written")
        data = bytearray()
        ended = False
        async for message in stream:
            if message.WhichOneof("payload") == "end":
                ended = True
                break
            data += message.data
        await self._write(process, first.start.offset, bytes(data), ended)
        await stream.send_message(tcr.TaskExecStdinWriteStreamResponse())

    async def TaskExecStdinStatus(
        self, stream: Stream[tcr.TaskExecStdinStatusRequest, tcr.TaskExecStdinStatusResponse]
    ) -> None:
        request = await self._recv(stream)
        _, process = self._process(request.task_id, request.exec_id)
        await stream.send_message(
            tcr.TaskExecStdinStatusResponse(num_bytes_written=process.stdin_written, closed=process.stdin_closed)
        )

    @staticmethod
    async def _write(process: Process, offset: int, data: bytes, eof: bool) -> None:
        try:
            await process.write_stdin(offset, data, eof)
        except SandboxError as exc:
            raise GRPCError(Status.FAILED_PRECONDITION, exc.message) from None

    # ------------------------------------------------------------ V2 entrypoint stdio
    async def SandboxStdioReadV2(
        self, stream: Stream[tcr.SandboxStdioReadV2Request, tcr.SandboxStdioReadV2Response]
    ) -> None:
        request = await self._recv(stream)
        sandbox = self.backend.task(request.task_id)
        if sandbox.entry is None:  # nothing runs but the image's idle default: no output, ever
            await sandbox.changed.wait()
            return
        stdout = request.file_descriptor == tcr.SANDBOX_STDIO_FILE_DESCRIPTOR_STDOUT
        first = True
        async for chunk in (sandbox.entry.stdout if stdout else sandbox.entry.stderr).read_from(request.offset):
            await stream.send_message(
                tcr.SandboxStdioReadV2Response(data=chunk, starting_offset=request.offset if first else 0)
            )
            first = False

    async def SandboxStdinWriteV2(
        self, stream: Stream[tcr.SandboxStdinWriteV2Request, tcr.SandboxStdinWriteV2Response]
    ) -> None:
        request = await self._recv(stream)
        sandbox = self.backend.task(request.task_id)
        if not sandbox.running():
            raise GRPCError(Status.FAILED_PRECONDITION, "Sandbox has already finished")
        if sandbox.entry is not None:
            await self._write(sandbox.entry, request.offset, request.data, request.eof)
        await stream.send_message(tcr.SandboxStdinWriteV2Response())
