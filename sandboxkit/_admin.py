"""Provider-level calls of the public API: capabilities, garbage collection, in-process registration."""

from __future__ import annotations

from collections.abc import Mapping

from sandboxkit import _portal
from sandboxkit._calls import guarded
from sandboxkit._capabilities import Capability
from sandboxkit._errors import ErrorCode, SandboxError
from sandboxkit._provider import Provider
from sandboxkit._registry import registry
from sandboxkit._types import StaleSandbox


async def aprovider_capabilities(
    provider: str | None = None, *, auth: Mapping[str, str] | None = None
) -> frozenset[Capability]:
    """What ``provider`` can honour now, on this machine (e.g. Docker's GPU needs an NVIDIA runtime)."""
    prov = registry.provider(provider, auth)
    return await guarded(prov.name, None, ErrorCode.PROVIDER_UNAVAILABLE, registry.current_capabilities(prov))


def provider_capabilities(
    provider: str | None = None, *, auth: Mapping[str, str] | None = None
) -> frozenset[Capability]:
    """Blocking :func:`aprovider_capabilities`."""
    return _portal.call(lambda: aprovider_capabilities(provider, auth=auth))


async def agc(
    provider: str | None = None,
    *,
    dry_run: bool = False,
    labels: Mapping[str, str] | None = None,
    auth: Mapping[str, str] | None = None,
) -> list[StaleSandbox]:
    """Find, and unless ``dry_run`` remove, sandboxes past their lifetime or left by a dead client."""
    prov = registry.provider(provider, auth)
    call = prov.gc(dry_run=dry_run, labels=dict(labels or {}))
    return await guarded(prov.name, None, ErrorCode.PROVIDER_UNAVAILABLE, call)


def gc(
    provider: str | None = None,
    *,
    dry_run: bool = False,
    labels: Mapping[str, str] | None = None,
    auth: Mapping[str, str] | None = None,
) -> list[StaleSandbox]:
    """Blocking :func:`agc`."""
    return _portal.call(lambda: agc(provider, dry_run=dry_run, labels=labels, auth=auth))


def register_provider(provider_class: type[Provider], *, name: str | None = None, summary: str = "") -> None:
    """Offer ``provider_class`` as ``provider=name`` in this process only (tests, notebooks).

    ``name`` defaults to the class's ``name``. Installed packages register through the
    ``sandboxkit`` entry-point group instead (see sandboxkit.spi); a name an installed plugin
    already offers is refused with ALREADY_EXISTS. Undo with :func:`unregister_provider`.
    """
    if not (isinstance(provider_class, type) and issubclass(provider_class, Provider)):
        raise SandboxError(
            ErrorCode.INVALID_ARGUMENT,
            f"register_provider needs a sandboxkit.spi.Provider subclass, got {provider_class!r}",
        )
    resolved = name or getattr(provider_class, "name", None)
    if not resolved:
        raise SandboxError(ErrorCode.INVALID_ARGUMENT, "register_provider needs name= or a class with a name")
    registry.register_class(provider_class, resolved, summary)


def unregister_provider(name: str) -> None:
    """Forget a provider registered in-process (or a plugin registered under ``name``)."""
    registry.unregister(name)


async def areset_providers() -> None:
    """Close every shared provider instance and forget in-process registrations; plugins reload on next use."""
    await registry.aclose()
    registry.forget()


def reset_providers() -> None:
    """Blocking :func:`areset_providers`."""
    _portal.call(areset_providers)
