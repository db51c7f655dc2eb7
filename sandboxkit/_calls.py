"""Calls into providers: finding the instance, checking its capabilities, translating what escapes."""

from __future__ import annotations

from collections.abc import Awaitable, Mapping
from typing import TypeVar

import anyio

from sandboxkit._capabilities import Capability
from sandboxkit._errors import ErrorCode, SandboxError
from sandboxkit._provider import Provider
from sandboxkit._registry import registry

T = TypeVar("T")


def get_provider(name: str | None, auth: Mapping[str, str] | None = None) -> Provider:
    """The registry's shared Provider instance for ``name`` and these credentials."""
    return registry.provider(name, auth)


async def require(provider: Provider, capability: Capability, what: str) -> None:
    """Raise CAPABILITY_NOT_SUPPORTED unless ``provider`` can honour ``capability`` now."""
    capabilities = await guarded(
        provider.name, None, ErrorCode.PROVIDER_UNAVAILABLE, registry.current_capabilities(provider)
    )
    _check(provider, capabilities, capability, what)


def require_known(provider: Provider, capability: Capability, what: str) -> None:
    """:func:`require` for a provider whose current capabilities were asked already (a live sandbox's)."""
    known = registry.known_capabilities(provider)
    _check(provider, type(provider).capabilities if known is None else known, capability, what)


def _check(provider: Provider, capabilities: frozenset[Capability], capability: Capability, what: str) -> None:
    if capability in capabilities:
        return
    if capability in type(provider).capabilities:
        hint = provider.capability_hint(capability) or "leave the option out or pick another provider"
        message = f"provider {provider.name!r} cannot honour {what} here (capability {capability.value!r}); {hint}"
    else:
        message = (
            f"provider {provider.name!r} does not support {what} (capability {capability.value!r}); "
            "leave the option out or pick a provider that declares it"
        )
    raise SandboxError(ErrorCode.CAPABILITY_NOT_SUPPORTED, message, provider=provider.name)


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
