"""Named volumes that outlive sandboxes (``volumes={"/data": "name"}`` mounts one).

Sync functions for scripts; the ``a``-prefixed twins for async code. Errors are SandboxErrors
with the facade's translation (a provider without volumes raises CAPABILITY_NOT_SUPPORTED).
"""

from __future__ import annotations

import builtins
from collections.abc import Mapping

from sandboxkit import _portal
from sandboxkit._async_sandbox import env_labels
from sandboxkit._calls import guarded
from sandboxkit._errors import ErrorCode
from sandboxkit._registry import registry
from sandboxkit._types import VolumeInfo

__all__ = ["acreate", "adelete", "alist", "create", "delete", "list"]


async def acreate(
    name: str,
    provider: str | None = None,
    *,
    labels: Mapping[str, str] | None = None,
    auth: Mapping[str, str] | None = None,
) -> VolumeInfo:
    """Create volume ``name`` (ALREADY_EXISTS if it exists), labelled with ``$SANDBOXKIT_LABELS`` and ``labels``."""
    prov = registry.provider(provider, auth)
    merged = {**env_labels(), **dict(labels or {})}
    return await guarded(prov.name, None, ErrorCode.VOLUME_ERROR, prov.create_volume(name, labels=merged))


async def alist(
    provider: str | None = None, *, unmanaged: bool = False, auth: Mapping[str, str] | None = None
) -> builtins.list[VolumeInfo]:
    """Volumes sandboxkit created; with ``unmanaged``, every named volume the provider has."""
    prov = registry.provider(provider, auth)
    return await guarded(prov.name, None, ErrorCode.VOLUME_ERROR, prov.list_volumes(unmanaged=unmanaged))


async def adelete(name: str, provider: str | None = None, *, auth: Mapping[str, str] | None = None) -> None:
    """Delete volume ``name`` and its data (VOLUME_ERROR when it is missing or in use)."""
    prov = registry.provider(provider, auth)
    await guarded(prov.name, None, ErrorCode.VOLUME_ERROR, prov.delete_volume(name))


def create(
    name: str,
    provider: str | None = None,
    *,
    labels: Mapping[str, str] | None = None,
    auth: Mapping[str, str] | None = None,
) -> VolumeInfo:
    """Blocking :func:`acreate`."""
    return _portal.call(lambda: acreate(name, provider, labels=labels, auth=auth))


def list(
    provider: str | None = None, *, unmanaged: bool = False, auth: Mapping[str, str] | None = None
) -> builtins.list[VolumeInfo]:
    """Blocking :func:`alist`."""
    return _portal.call(lambda: alist(provider, unmanaged=unmanaged, auth=auth))


def delete(name: str, provider: str | None = None, *, auth: Mapping[str, str] | None = None) -> None:
    """Blocking :func:`adelete`."""
    _portal.call(lambda: adelete(name, provider, auth=auth))
