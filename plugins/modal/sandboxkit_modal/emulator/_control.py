"""The emulated control plane (``modal.client.ModalClient``): apps, images, secrets, volumes, sandboxes."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any, TypeVar

from google.protobuf.empty_pb2 import Empty
from grpclib import GRPCError, Status
from grpclib.server import Stream
from modal_proto import api_grpc, api_pb2

from sandboxkit_modal.emulator._auth import Credentials
from sandboxkit_modal.emulator._images import BUILDER_VERSION, ImageError
from sandboxkit_modal.emulator._servicer import answer_unimplemented
from sandboxkit_modal.emulator._state import GS, Backend, EmuSandbox, Secret

R = TypeVar("R")
#: Longest a wait long-poll is held (the client asks for 10 s and re-polls).
MAX_WAIT = 55.0
#: Sandboxes per list page.
LIST_PAGE = 100
CREATE_IF_MISSING = api_pb2.OBJECT_CREATION_TYPE_CREATE_IF_MISSING
CREATE_FAIL_IF_EXISTS = api_pb2.OBJECT_CREATION_TYPE_CREATE_FAIL_IF_EXISTS


@answer_unimplemented
class ControlPlane(api_grpc.ModalClientBase):
    """Every RPC the modal SDK makes for the sandbox lifecycle; the rest answer UNIMPLEMENTED."""

    def __init__(self, backend: Backend, credentials: Credentials) -> None:
        self.backend = backend
        self.credentials = credentials
        self._named_secrets: dict[str, str] = {}

    async def _recv(self, stream: Stream[R, Any]) -> R:
        request = await stream.recv_message()
        self.credentials.check_token(stream.metadata or {})  # type: ignore[arg-type]
        assert request is not None
        return request

    # ------------------------------------------------------------ session
    async def ClientHello(self, stream: Stream[Empty, api_pb2.ClientHelloResponse]) -> None:
        await self._recv(stream)
        await stream.send_message(api_pb2.ClientHelloResponse())

    async def AuthTokenGet(self, stream: Stream[api_pb2.AuthTokenGetRequest, api_pb2.AuthTokenGetResponse]) -> None:
        await self._recv(stream)
        await stream.send_message(api_pb2.AuthTokenGetResponse(token=self.credentials.issue_jwt("client")))

    async def EnvironmentGetOrCreate(
        self, stream: Stream[api_pb2.EnvironmentGetOrCreateRequest, api_pb2.EnvironmentGetOrCreateResponse]
    ) -> None:
        request = await self._recv(stream)
        metadata = api_pb2.EnvironmentMetadata(
            name=request.deployment_name or "main",
            settings=api_pb2.EnvironmentSettings(image_builder_version=BUILDER_VERSION),
        )
        await stream.send_message(
            api_pb2.EnvironmentGetOrCreateResponse(environment_id="en-emulator", metadata=metadata)
        )

    async def AppGetOrCreate(
        self, stream: Stream[api_pb2.AppGetOrCreateRequest, api_pb2.AppGetOrCreateResponse]
    ) -> None:
        request = await self._recv(stream)
        app = self.backend.app(request.app_name, create=request.object_creation_type == CREATE_IF_MISSING)
        await stream.send_message(api_pb2.AppGetOrCreateResponse(app_id=app.id))

    # ------------------------------------------------------------ dependencies
    async def ImageGetOrCreate(
        self, stream: Stream[api_pb2.ImageGetOrCreateRequest, api_pb2.ImageGetOrCreateResponse]
    ) -> None:
        request = await self._recv(stream)
        try:
            image_id = self.backend.images.add(request.image)
            result = GS(status=GS.GENERIC_STATUS_SUCCESS)
        except ImageError as exc:
            image_id = f"im-{uuid.uuid4().hex[:22]}"
            result = GS(status=GS.GENERIC_STATUS_FAILURE, exception=str(exc))
        await stream.send_message(api_pb2.ImageGetOrCreateResponse(image_id=image_id, result=result))

    async def ImageFromId(self, stream: Stream[api_pb2.ImageFromIdRequest, api_pb2.ImageFromIdResponse]) -> None:
        request = await self._recv(stream)
        if not self.backend.images.known(request.image_id):
            raise GRPCError(Status.NOT_FOUND, f"Image {request.image_id} not found")
        await stream.send_message(
            api_pb2.ImageFromIdResponse(
                image_id=request.image_id, metadata=api_pb2.ImageMetadata(image_builder_version=BUILDER_VERSION)
            )
        )

    async def SecretGetOrCreate(
        self, stream: Stream[api_pb2.SecretGetOrCreateRequest, api_pb2.SecretGetOrCreateResponse]
    ) -> None:
        request = await self._recv(stream)
        name = request.deployment_name
        if not name:  # Secret.from_dict / from_dotenv: the values travel inline
            secret_id = f"st-{uuid.uuid4().hex[:22]}"
            self.backend.secrets[secret_id] = Secret(env=dict(request.env_dict))
        else:
            if request.env_dict:  # Secret.objects.create / from_dict(...) with a name: into the local store
                kind = request.object_creation_type
                self.backend.stores.create_secret(
                    name,
                    dict(request.env_dict),
                    exist_ok=kind == CREATE_IF_MISSING,
                    overwrite=kind == api_pb2.OBJECT_CREATION_TYPE_CREATE_OVERWRITE_IF_EXISTS,
                )
            values = self.backend.stores.secret_values(name)  # NOT_FOUND, saying how to create it
            missing = set(request.required_keys) - set(values)
            if missing:
                raise GRPCError(Status.NOT_FOUND, f"Secret '{name}' is missing keys: {', '.join(sorted(missing))}")
            secret_id = self._named_secrets.setdefault(name, f"st-{uuid.uuid4().hex[:22]}")
            self.backend.secrets[secret_id] = Secret(name=name)
        await stream.send_message(api_pb2.SecretGetOrCreateResponse(secret_id=secret_id))

    async def SecretDelete(self, stream: Stream[api_pb2.SecretDeleteRequest, Empty]) -> None:
        request = await self._recv(stream)
        secret = self.backend.secrets.get(request.secret_id)
        if secret is None or secret.name is None:
            raise GRPCError(Status.NOT_FOUND, f"Secret {request.secret_id} not found")
        self.backend.stores.delete_secret(secret.name)
        self._named_secrets.pop(secret.name, None)
        del self.backend.secrets[request.secret_id]
        await stream.send_message(Empty())

    async def VolumeGetOrCreate(
        self, stream: Stream[api_pb2.VolumeGetOrCreateRequest, api_pb2.VolumeGetOrCreateResponse]
    ) -> None:
        request = await self._recv(stream)
        if not request.deployment_name:
            raise GRPCError(Status.UNIMPLEMENTED, "the Modal emulator supports named volumes only")
        kind = request.object_creation_type
        volume_id = await self.backend.stores.volume_id(
            request.deployment_name,
            create=kind in (CREATE_IF_MISSING, CREATE_FAIL_IF_EXISTS),
            fail_if_exists=kind == CREATE_FAIL_IF_EXISTS,
        )
        await stream.send_message(
            api_pb2.VolumeGetOrCreateResponse(
                volume_id=volume_id,
                version=request.version,
                metadata=api_pb2.VolumeMetadata(name=request.deployment_name, version=request.version),
            )
        )

    async def VolumeList(self, stream: Stream[api_pb2.VolumeListRequest, api_pb2.VolumeListResponse]) -> None:
        request = await self._recv(stream)
        stores = self.backend.stores
        rows = sorted(await stores.volumes(), key=stores.created_at, reverse=True)
        before = request.pagination.created_before
        rows = [v for v in rows if not before or stores.created_at(v) < before]
        if request.pagination.max_objects:
            rows = rows[: request.pagination.max_objects]
        items = []
        for info in rows:
            volume_id = await stores.volume_id(info.name, create=False)
            created = api_pb2.CreationInfo(created_at=stores.created_at(info))
            metadata = api_pb2.VolumeMetadata(name=info.name, creation_info=created)
            items.append(api_pb2.VolumeListItem(label=info.name, volume_id=volume_id, metadata=metadata))
        await stream.send_message(api_pb2.VolumeListResponse(items=items))

    async def VolumeDelete(self, stream: Stream[api_pb2.VolumeDeleteRequest, Empty]) -> None:
        request = await self._recv(stream)
        await self.backend.stores.delete_volume(request.volume_id)
        await stream.send_message(Empty())

    # ------------------------------------------------------------ create
    async def SandboxCreate(self, stream: Stream[api_pb2.SandboxCreateRequest, api_pb2.SandboxCreateResponse]) -> None:
        request = await self._recv(stream)
        sandbox = await self.backend.create(
            app_id=request.app_id,
            definition=request.definition,
            tags={t.tag_name: t.tag_value for t in request.tags},
            secret_sources=[],
            v2=False,
        )
        await stream.send_message(api_pb2.SandboxCreateResponse(sandbox_id=sandbox.id, metadata=sandbox.metadata()))

    async def SandboxCreateV2(
        self, stream: Stream[api_pb2.SandboxCreateV2Request, api_pb2.SandboxCreateV2Response]
    ) -> None:
        request = await self._recv(stream)
        sandbox = await self.backend.create(
            app_id=request.app_id,
            definition=request.definition,
            tags={t.tag_name: t.tag_value for t in request.tags},
            secret_sources=list(request.secret_sources),
            v2=True,
        )
        await stream.send_message(
            api_pb2.SandboxCreateV2Response(
                sandbox_id=sandbox.id,
                task_id=sandbox.task_id,
                metadata=sandbox.metadata(),
                command_router_access=self._router_access(sandbox),
            )
        )

    def _router_access(self, sandbox: EmuSandbox) -> api_pb2.CommandRouterAccess:
        return api_pb2.CommandRouterAccess(url=self.backend.router_url, jwt=self.credentials.issue_jwt(sandbox.task_id))

    # ------------------------------------------------------------ tasks and routers
    async def SandboxGetTaskId(
        self, stream: Stream[api_pb2.SandboxGetTaskIdRequest, api_pb2.SandboxGetTaskIdResponse]
    ) -> None:
        request = await self._recv(stream)
        sandbox = self.backend.sandbox(request.sandbox_id)
        # a scheduled sandbox keeps its task id after it ends (a result alone means "never scheduled")
        await stream.send_message(api_pb2.SandboxGetTaskIdResponse(task_id=sandbox.task_id, task_result=sandbox.result))

    SandboxGetTaskIdV2 = SandboxGetTaskId

    async def SandboxGetCommandRouterAccess(
        self,
        stream: Stream[api_pb2.SandboxGetCommandRouterAccessRequest, api_pb2.SandboxGetCommandRouterAccessResponse],
    ) -> None:
        request = await self._recv(stream)
        by_id = request.sandbox_id
        sandbox = self.backend.sandbox(by_id) if by_id else self.backend.task(request.task_id)
        access = self._live_access(sandbox)
        await stream.send_message(api_pb2.SandboxGetCommandRouterAccessResponse(url=access.url, jwt=access.jwt))

    async def TaskGetCommandRouterAccess(
        self,
        stream: Stream[api_pb2.TaskGetCommandRouterAccessRequest, api_pb2.TaskGetCommandRouterAccessResponse],
    ) -> None:
        request = await self._recv(stream)
        access = self._live_access(self.backend.task(request.task_id))
        await stream.send_message(api_pb2.TaskGetCommandRouterAccessResponse(url=access.url, jwt=access.jwt))

    def _live_access(self, sandbox: EmuSandbox) -> api_pb2.CommandRouterAccess:
        if not sandbox.running():
            raise GRPCError(Status.FAILED_PRECONDITION, f"Sandbox {sandbox.id} has already finished")
        return self._router_access(sandbox)

    # ------------------------------------------------------------ lifecycle
    async def SandboxWait(self, stream: Stream[api_pb2.SandboxWaitRequest, api_pb2.SandboxWaitResponse]) -> None:
        request = await self._recv(stream)
        sandbox = self.backend.sandbox(request.sandbox_id)
        if sandbox.running() and request.timeout > 0:
            try:
                await asyncio.wait_for(sandbox.changed.wait(), min(request.timeout, MAX_WAIT))
            except TimeoutError:
                pass
        await stream.send_message(api_pb2.SandboxWaitResponse(result=sandbox.result, metadata=sandbox.metadata()))

    SandboxWaitV2 = SandboxWait

    async def SandboxTerminate(
        self, stream: Stream[api_pb2.SandboxTerminateRequest, api_pb2.SandboxTerminateResponse]
    ) -> None:
        request = await self._recv(stream)
        sandbox = self.backend.sandbox(request.sandbox_id)
        existing = sandbox.result
        sandbox.finish(GS.GENERIC_STATUS_TERMINATED, "Sandbox was terminated")
        await sandbox.drain()
        await stream.send_message(api_pb2.SandboxTerminateResponse(existing_result=existing))

    SandboxTerminateV2 = SandboxTerminate

    # ------------------------------------------------------------ tunnels and snapshots
    async def SandboxGetTunnels(
        self, stream: Stream[api_pb2.SandboxGetTunnelsRequest, api_pb2.SandboxGetTunnelsResponse]
    ) -> None:
        request = await self._recv(stream)
        tunnels = await self.backend.sandbox(request.sandbox_id).tunnels()
        await stream.send_message(
            api_pb2.SandboxGetTunnelsResponse(result=GS(status=GS.GENERIC_STATUS_SUCCESS), tunnels=tunnels)
        )

    SandboxGetTunnelsV2 = SandboxGetTunnels

    async def SandboxSnapshotFs(
        self, stream: Stream[api_pb2.SandboxSnapshotFsRequest, api_pb2.SandboxSnapshotFsResponse]
    ) -> None:
        request = await self._recv(stream)
        image_id = await self.backend.sandbox(request.sandbox_id).snapshot(ttl=None)
        await stream.send_message(
            api_pb2.SandboxSnapshotFsResponse(image_id=image_id, result=GS(status=GS.GENERIC_STATUS_SUCCESS))
        )

    # ------------------------------------------------------------ finding
    async def SandboxList(self, stream: Stream[api_pb2.SandboxListRequest, api_pb2.SandboxListResponse]) -> None:
        request = await self._recv(stream)
        wanted = {t.tag_name: t.tag_value for t in request.tags}
        rows = sorted(
            (
                s
                for s in self.backend.sandboxes.values()
                if (not request.app_id or s.app.id == request.app_id)
                and (request.include_finished or s.running())
                and all(s.tags.get(k) == v for k, v in wanted.items())
                and (not request.before_timestamp or s.created_at < request.before_timestamp)
            ),
            key=lambda s: -s.created_at,
        )
        await stream.send_message(api_pb2.SandboxListResponse(sandboxes=[s.info() for s in rows[:LIST_PAGE]]))

    SandboxListV2 = SandboxList

    async def SandboxGetFromName(
        self, stream: Stream[api_pb2.SandboxGetFromNameRequest, api_pb2.SandboxGetFromNameResponse]
    ) -> None:
        request = await self._recv(stream)
        app = self.backend.apps.get(request.app_name)
        hits = [
            s
            for s in self.backend.sandboxes.values()
            if app is not None
            and s.app.id == app.id
            and s.name == request.sandbox_name
            and (s.running() or request.include_terminated)
        ]
        if not hits:
            raise GRPCError(
                Status.NOT_FOUND,
                f"Sandbox with name '{request.sandbox_name}' not found in App '{request.app_name}'",
            )
        found = max(hits, key=lambda s: (s.running(), s.created_at))
        await stream.send_message(api_pb2.SandboxGetFromNameResponse(sandbox_id=found.id, metadata=found.metadata()))

    SandboxGetFromNameV2 = SandboxGetFromName

    async def SandboxTagsGet(
        self, stream: Stream[api_pb2.SandboxTagsGetRequest, api_pb2.SandboxTagsGetResponse]
    ) -> None:
        request = await self._recv(stream)
        sandbox = self.backend.sandbox(request.sandbox_id)
        tags = [api_pb2.SandboxTag(tag_name=k, tag_value=v) for k, v in sandbox.tags.items()]
        await stream.send_message(api_pb2.SandboxTagsGetResponse(tags=tags))

    SandboxTagsGetV2 = SandboxTagsGet

    async def SandboxTagsSet(self, stream: Stream[api_pb2.SandboxTagsSetRequest, Empty]) -> None:
        request = await self._recv(stream)
        self.backend.sandbox(request.sandbox_id).tags = {t.tag_name: t.tag_value for t in request.tags}
        await stream.send_message(Empty())

    SandboxTagsSetV2 = SandboxTagsSet

    # ------------------------------------------------------------ V1 entrypoint stdio
    async def SandboxGetLogs(self, stream: Stream[api_pb2.SandboxGetLogsRequest, api_pb2.TaskLogsBatch]) -> None:
        request = await self._recv(stream)
        sandbox = self.backend.sandbox(request.sandbox_id)
        entry = sandbox.entry
        if entry is None:  # nothing runs but the image's idle default: no output until the sandbox ends
            try:
                await asyncio.wait_for(sandbox.changed.wait(), request.timeout or MAX_WAIT)
            except TimeoutError:
                return  # the client asks again
            await stream.send_message(api_pb2.TaskLogsBatch(entry_id=request.last_entry_id, eof=True))
            return
        output = entry.stdout if request.file_descriptor == api_pb2.FILE_DESCRIPTOR_STDOUT else entry.stderr
        offset = int(request.last_entry_id or 0)
        async for chunk in output.read_from(offset):
            offset += len(chunk)
            item = api_pb2.TaskLogs(data=chunk.decode("utf-8", "replace"), file_descriptor=request.file_descriptor)
            await stream.send_message(api_pb2.TaskLogsBatch(entry_id=str(offset), items=[item]))
        await stream.send_message(api_pb2.TaskLogsBatch(entry_id=str(offset), eof=True))

    async def SandboxStdinWrite(
        self, stream: Stream[api_pb2.SandboxStdinWriteRequest, api_pb2.SandboxStdinWriteResponse]
    ) -> None:
        request = await self._recv(stream)
        sandbox = self.backend.sandbox(request.sandbox_id)
        if not sandbox.running():
            raise GRPCError(Status.FAILED_PRECONDITION, "Sandbox has already finished")
        if sandbox.entry is not None:
            await sandbox.entry.write_stdin(sandbox.entry.stdin_written, request.input, request.eof)
        await stream.send_message(api_pb2.SandboxStdinWriteResponse())
