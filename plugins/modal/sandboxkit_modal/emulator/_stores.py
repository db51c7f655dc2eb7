"""Where the emulator keeps what outlives a sandbox: volumes (Docker named volumes) and named secrets
(sandboxkit's local secret store)."""

from __future__ import annotations

import uuid
from typing import Any

from grpclib import GRPCError, Status


class Stores:
    """Volume ids <-> Docker volume names, and secret values from the local store."""

    def __init__(self) -> None:
        self._volume_names: dict[str, str] = {}
        self._volume_ids: dict[str, str] = {}

    async def volume_id(self, name: str, *, create: bool) -> str:
        """The id handed out for volume ``name``; NOT_FOUND unless it exists or ``create``."""
        raise GRPCError(Status.UNIMPLEMENTED, "volumes are not wired into the Modal emulator yet")

    def volume_name(self, volume_id: str) -> str:
        name = self._volume_names.get(volume_id)
        if name is None:
            raise GRPCError(Status.NOT_FOUND, f"Volume {volume_id} not found")
        return name

    def _remember(self, name: str) -> str:
        if name not in self._volume_ids:
            volume_id = f"vo-{uuid.uuid4().hex[:22]}"
            self._volume_ids[name], self._volume_names[volume_id] = volume_id, name
        return self._volume_ids[name]

    def secret_exists(self, name: str) -> bool:
        raise GRPCError(Status.UNIMPLEMENTED, "named secrets are not wired into the Modal emulator yet")

    def secret_values(self, name: str) -> dict[str, str]:
        raise GRPCError(Status.UNIMPLEMENTED, "named secrets are not wired into the Modal emulator yet")

    def docker_options(self, *, gpu: bool, gpu_mode: str) -> dict[str, Any]:
        return {}
