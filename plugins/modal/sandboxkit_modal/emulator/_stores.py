"""Where the emulator keeps what outlives a sandbox: Modal volumes are the Docker provider's named
volumes, Modal's named secrets are sandboxkit's local secret store (``sandboxkit secret create``)."""

from __future__ import annotations

import datetime as dt
import uuid

from grpclib import GRPCError, Status

from sandboxkit import ErrorCode, SandboxError, VolumeInfo, volumes
from sandboxkit.secrets import create_secret, delete_secret, get_secret


class Stores:
    """Volume ids <-> Docker volume names, and secret values from the local store."""

    def __init__(self) -> None:
        self._names: dict[str, str] = {}
        self._ids: dict[str, str] = {}

    # ------------------------------------------------------------ volumes
    def _id(self, name: str) -> str:
        if name not in self._ids:
            volume_id = f"vo-{uuid.uuid4().hex[:22]}"
            self._ids[name], self._names[volume_id] = volume_id, name
        return self._ids[name]

    async def volumes(self) -> list[VolumeInfo]:
        """Every named Docker volume (Modal lists all of an environment's volumes)."""
        try:
            return await volumes.alist("docker", unmanaged=True)
        except SandboxError as exc:
            raise GRPCError(Status.UNAVAILABLE, exc.message) from None

    async def volume_id(self, name: str, *, create: bool, fail_if_exists: bool = False) -> str:
        """The id of volume ``name``; NOT_FOUND unless it exists or ``create`` (which makes it)."""
        exists = any(v.name == name for v in await self.volumes())
        if exists and fail_if_exists:
            raise GRPCError(Status.ALREADY_EXISTS, f"Volume '{name}' already exists")
        if not exists:
            if not create:
                raise GRPCError(
                    Status.NOT_FOUND,
                    f"Volume '{name}' not found; create it with `sandboxkit volume create {name}` "
                    f"(or modal.Volume.objects.create('{name}'))",
                )
            try:
                await volumes.acreate(name, "docker")
            except SandboxError as exc:
                if exc.code != ErrorCode.ALREADY_EXISTS:
                    raise GRPCError(Status.INVALID_ARGUMENT, exc.message) from None
        return self._id(name)

    def volume_name(self, volume_id: str) -> str:
        name = self._names.get(volume_id)
        if name is None:
            raise GRPCError(Status.NOT_FOUND, f"Volume {volume_id} not found")
        return name

    def created_at(self, info: VolumeInfo) -> float:
        return (info.created_at or dt.datetime.now(dt.UTC)).timestamp()

    async def delete_volume(self, volume_id: str) -> None:
        name = self.volume_name(volume_id)
        try:
            await volumes.adelete(name, "docker")
        except SandboxError as exc:
            raise GRPCError(Status.FAILED_PRECONDITION, exc.message) from None
        self._names.pop(volume_id, None)
        self._ids.pop(name, None)

    # ------------------------------------------------------------ secrets
    def create_secret(self, name: str, values: dict[str, str], *, exist_ok: bool, overwrite: bool) -> None:
        """Store a named secret (ALREADY_EXISTS unless ``exist_ok`` or ``overwrite``)."""
        try:
            create_secret(name, values, overwrite=overwrite)
        except SandboxError as exc:
            if exc.code == ErrorCode.ALREADY_EXISTS:
                if exist_ok:
                    return
                raise GRPCError(Status.ALREADY_EXISTS, f"Secret '{name}' already exists") from None
            raise GRPCError(Status.INVALID_ARGUMENT, exc.message) from None

    def delete_secret(self, name: str) -> None:
        try:
            delete_secret(name)
        except SandboxError as exc:
            raise GRPCError(Status.NOT_FOUND, exc.message) from None

    def secret_values(self, name: str) -> dict[str, str]:
        """A stored secret's variables; NOT_FOUND naming the fix when there is none."""
        try:
            return get_secret(name)
        except SandboxError as exc:
            raise GRPCError(Status.NOT_FOUND, exc.message) from None
