"""Snapshot: a saved sandbox filesystem that new sandboxes start from (capability SNAPSHOTS)."""

from __future__ import annotations

import builtins
import datetime as dt
import functools
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sandboxkit import _portal
from sandboxkit._calls import get_provider, guarded, require
from sandboxkit._capabilities import Capability
from sandboxkit._errors import ErrorCode
from sandboxkit._types import SnapshotInfo


@dataclass(frozen=True, kw_only=True)
class Snapshot:
    """A filesystem snapshot: ``Sandbox.create(snapshot=snap)`` (or its ``id``) starts from it."""

    id: str
    provider: str
    created_at: dt.datetime | None = None
    #: when it may be reaped (``ttl`` passed to ``snapshot()``); None means never
    expires_at: dt.datetime | None = None
    #: bookkeeping labels (session, owner), as sandboxes carry them
    labels: Mapping[str, str] = field(default_factory=dict)
    #: credentials of the provider that made it, for ``delete``
    auth: Mapping[str, str] | None = field(default=None, repr=False, compare=False)

    @classmethod
    def from_info(cls, info: SnapshotInfo, auth: Mapping[str, str] | None = None) -> Snapshot:
        """The public form of the SPI's SnapshotInfo."""
        return cls(
            id=info.id,
            provider=info.provider,
            created_at=info.created_at,
            expires_at=info.expires_at,
            labels=dict(info.labels),
            auth=auth,
        )

    def delete(self) -> None:
        """Delete the snapshot; refused while a sandbox started from it still exists."""
        _portal.call(self.delete_async)

    async def delete_async(self) -> None:
        """Async twin of :meth:`delete`."""
        provider = get_provider(self.provider, self.auth)
        await require(provider, Capability.SNAPSHOTS, "snapshots")
        await guarded(provider.name, None, ErrorCode.PROVIDER_UNAVAILABLE, provider.delete_snapshot(self.id))

    def __str__(self) -> str:
        return self.id


async def snapshots_async(
    provider: str | None = None, *, labels: Mapping[str, str] | None = None, **auth: Any
) -> builtins.list[Snapshot]:
    """Async twin of :func:`snapshots`."""
    prov = get_provider(provider, auth.get("auth"))
    await require(prov, Capability.SNAPSHOTS, "snapshots")
    infos = await guarded(
        prov.name, None, ErrorCode.PROVIDER_UNAVAILABLE, prov.list_snapshots(labels=dict(labels or {}))
    )
    return [Snapshot.from_info(i, auth.get("auth")) for i in infos]


def snapshots(
    provider: str | None = None, *, labels: Mapping[str, str] | None = None, **auth: Any
) -> builtins.list[Snapshot]:
    """The snapshots sandboxkit made on a provider, newest first, filtered by bookkeeping labels.

    Without ``labels``, those of ``$SANDBOXKIT_LABELS`` are not applied: every snapshot is listed.
    """
    return _portal.call(functools.partial(snapshots_async, provider, labels=labels, **auth))


__all__ = ["Snapshot", "snapshots", "snapshots_async"]
