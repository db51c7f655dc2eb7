"""Provider discovery: pluggy over the ``sandboxkit`` entry-point group, lazy and fault tolerant."""

from __future__ import annotations

import hashlib
import importlib
import os
import threading
import weakref
from collections.abc import Mapping
from dataclasses import dataclass
from importlib.metadata import entry_points
from types import ModuleType

import anyio
import pluggy

from sandboxkit import _hookspecs
from sandboxkit._capabilities import Capability
from sandboxkit._errors import ErrorCode, SandboxError
from sandboxkit._hookspecs import ProviderRecord
from sandboxkit._provider import Provider

DEFAULT_PROVIDER = "docker"
#: The plugin name under which :func:`register_provider` files provider classes.
IN_PROCESS = "in-process"


@dataclass(frozen=True, kw_only=True)
class ProviderStatus:
    """A provider as ``sandboxkit.providers()`` reports it; ``error`` is set when it is broken."""

    name: str
    summary: str = ""
    plugin: str = ""
    error: str | None = None

    @property
    def ok(self) -> bool:
        """True when the plugin loaded (the provider SDK itself is imported only on use)."""
        return self.error is None


class Registry:
    """Loads plugins once; one broken plugin is recorded, never fatal to the others."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pm: pluggy.PluginManager | None = None
        self._records: dict[str, ProviderRecord] = {}
        self._broken: dict[str, str] = {}
        self._plugin_of: dict[str, str] = {}
        self._classes: dict[str, type[Provider]] = {}
        self._instances: dict[tuple[str, str], Provider] = {}
        self._retired: list[Provider] = []  # instances of unregistered providers, closed by aclose()
        self._capabilities: weakref.WeakKeyDictionary[Provider, frozenset[Capability]] = weakref.WeakKeyDictionary()

    @property
    def plugin_manager(self) -> pluggy.PluginManager:
        """The pluggy manager, with every entry point loaded."""
        with self._lock:
            if self._pm is None:
                self._pm = self._load()
            return self._pm

    def register(self, plugin: ModuleType | object, name: str | None = None) -> None:
        """Register a plugin object in-process (tests, embedded providers)."""
        pm = self.plugin_manager
        pm.register(plugin, name=name)
        with self._lock:
            self._collect(pm, only=plugin)

    def register_class(self, cls: type[Provider], name: str, summary: str = "") -> None:
        """Offer ``cls`` as provider ``name`` in this process, replacing an in-process one of that name."""
        _ = self.plugin_manager
        with self._lock:
            owner = self._plugin_of.get(name)
            if name in self._records and owner != IN_PROCESS:
                raise SandboxError(
                    ErrorCode.ALREADY_EXISTS,
                    f"provider {name!r} is already offered by plugin {owner!r}; register yours under another name",
                )
            factory = f"{cls.__module__}:{cls.__qualname__}"
            self._records[name] = ProviderRecord(name=name, factory=factory, summary=summary or _summary(cls))
            self._plugin_of[name] = IN_PROCESS
            self._classes[name] = cls
            self._broken.pop(name, None)

    def unregister(self, name: str) -> None:
        """Forget a plugin registered under ``name``, or an in-process provider of that name."""
        pm = self.plugin_manager
        plugin = pm.unregister(name=name) if pm.has_plugin(name) else None
        with self._lock:
            for provider, owner in list(self._plugin_of.items()):
                if owner == name or (plugin is None and provider == name and owner == IN_PROCESS):
                    self._records.pop(provider, None)
                    self._classes.pop(provider, None)
                    self._plugin_of.pop(provider, None)
                    for key in [k for k in self._instances if k[0] == provider]:
                        self._retired.append(self._instances.pop(key))

    # ------------------------------------------------------------ provider instances
    def provider(self, name: str | None, auth: Mapping[str, str] | None = None) -> Provider:
        """The shared Provider instance for ``name`` (default: ``$SANDBOXKIT_PROVIDER``) and these credentials.

        The cache key holds a hash of the credentials, never their values.
        """
        resolved = name or default_provider_name()
        key = (resolved, _fingerprint(auth or {}))
        with self._lock:
            found = self._instances.get(key)
        if found is not None:
            return found
        cls = self.provider_class(resolved)
        try:
            created = cls(auth=auth)
        except SandboxError:
            raise
        except Exception as exc:
            raise SandboxError(
                ErrorCode.PROVIDER_UNAVAILABLE,
                f"provider {resolved!r} failed to start: {type(exc).__name__}: {exc}",
                provider=resolved,
            ) from exc
        with self._lock:
            return self._instances.setdefault(key, created)

    async def current_capabilities(self, provider: Provider) -> frozenset[Capability]:
        """``provider.current_capabilities()``, asked once per instance (a failure asks again next time)."""
        known = self._capabilities.get(provider)
        if known is None:
            known = frozenset(await provider.current_capabilities())
            self._capabilities[provider] = known
        return known

    def known_capabilities(self, provider: Provider) -> frozenset[Capability] | None:
        """What :meth:`current_capabilities` found for ``provider``, or None before it was asked."""
        return self._capabilities.get(provider)

    async def aclose(self) -> None:
        """Close every cached provider instance (``Provider.aclose``); later calls make new ones."""
        with self._lock:
            instances = [*self._instances.values(), *self._retired]
            self._instances, self._retired = {}, []
        for instance in instances:
            self._capabilities.pop(instance, None)
            with anyio.move_on_after(10, shield=True):
                try:
                    await instance.aclose()
                except Exception:  # closing is best effort: one failure must not keep the others open
                    pass

    def forget(self) -> None:
        """Drop every plugin and in-process registration; entry points load again on next use.

        Cached instances are kept for the next :meth:`aclose`, but no longer handed out.
        """
        with self._lock:
            self._pm = None
            self._records.clear()
            self._broken.clear()
            self._plugin_of.clear()
            self._classes.clear()
            self._retired += self._instances.values()
            self._instances.clear()

    def _load(self) -> pluggy.PluginManager:
        pm = pluggy.PluginManager(_hookspecs.PROJECT)
        pm.add_hookspecs(_hookspecs)
        disabled = {n.strip() for n in os.environ.get("SANDBOXKIT_DISABLED_PLUGINS", "").split(",") if n.strip()}
        strict = os.environ.get("SANDBOXKIT_STRICT_PLUGINS") == "1"
        for ep in entry_points(group=_hookspecs.PROJECT):
            if ep.name in disabled or pm.has_plugin(ep.name):
                continue
            try:
                pm.register(ep.load(), name=ep.name)
            except Exception as exc:  # a broken plugin must not break the others
                if strict:
                    raise
                self._broken[ep.name] = f"plugin {ep.value!r} failed to load: {type(exc).__name__}: {exc}"
                self._plugin_of[ep.name] = ep.name
        pm.check_pending()
        self._collect(pm)
        return pm

    def _collect(self, pm: pluggy.PluginManager, only: object | None = None) -> None:
        for impl in pm.hook.sandboxkit_providers.get_hookimpls():
            if only is not None and impl.plugin is not only:
                continue
            try:
                records: list[ProviderRecord] = list(impl.function())  # type: ignore[call-overload]
            except Exception as exc:
                self._broken[impl.plugin_name] = f"hook sandboxkit_providers failed: {type(exc).__name__}: {exc}"
                continue
            for rec in records:
                if rec.name in self._records and self._plugin_of.get(rec.name) != impl.plugin_name:
                    self._broken[rec.name] = (
                        f"provider {rec.name!r} is offered by both {self._plugin_of[rec.name]!r} and "
                        f"{impl.plugin_name!r}; uninstall one or disable it with SANDBOXKIT_DISABLED_PLUGINS"
                    )
                    continue
                self._records[rec.name] = rec
                self._plugin_of[rec.name] = impl.plugin_name
                self._broken.pop(rec.name, None)

    def statuses(self) -> list[ProviderStatus]:
        """Every known provider, broken ones included, sorted by name."""
        _ = self.plugin_manager  # loads the entry points once
        names = sorted(set(self._records) | set(self._broken))
        return [
            ProviderStatus(
                name=n,
                summary=self._records[n].summary if n in self._records else "",
                plugin=self._plugin_of.get(n, ""),
                error=self._broken.get(n),
            )
            for n in names
        ]

    def provider_class(self, name: str) -> type[Provider]:
        """Import and return the Provider class registered as ``name``."""
        _ = self.plugin_manager  # loads the entry points once
        if name in self._classes:
            return self._classes[name]
        if name in self._broken and name not in self._records:
            raise SandboxError(ErrorCode.PROVIDER_UNAVAILABLE, f"provider {name!r} is broken: {self._broken[name]}")
        record = self._records.get(name)
        if record is None:
            valid = ", ".join(sorted(self._records)) or "none (install sandboxkit-docker or sandboxkit-modal)"
            raise SandboxError(ErrorCode.PROVIDER_NOT_FOUND, f"no provider named {name!r}; valid names are: {valid}")
        module_name, _, attr = record.factory.partition(":")
        try:
            cls = getattr(importlib.import_module(module_name), attr)
        except Exception as exc:
            hint = f"; {record.install_hint}" if record.install_hint else ""
            raise SandboxError(
                ErrorCode.PROVIDER_UNAVAILABLE,
                f"provider {name!r} could not be imported ({type(exc).__name__}: {exc}){hint}",
            ) from exc
        if not (isinstance(cls, type) and issubclass(cls, Provider)):
            raise SandboxError(
                ErrorCode.PROVIDER_UNAVAILABLE, f"provider {name!r}: {record.factory} is not a sandboxkit Provider"
            )
        self._classes[name] = cls
        return cls


def _fingerprint(auth: Mapping[str, str]) -> str:
    digest = hashlib.sha256()
    for key, value in sorted(auth.items()):
        digest.update(f"{len(key)}:{key}{len(value)}:{value}".encode())
    return digest.hexdigest()


def _summary(cls: type[Provider]) -> str:
    doc = (cls.__doc__ or "").strip()
    return doc.splitlines()[0] if doc else "registered in-process"


registry = Registry()


def default_provider_name() -> str:
    """``$SANDBOXKIT_PROVIDER``, else ``docker``."""
    return os.environ.get("SANDBOXKIT_PROVIDER") or DEFAULT_PROVIDER


def providers() -> list[ProviderStatus]:
    """Registered providers, broken ones reported with their reason. Imports no provider SDK."""
    return registry.statuses()
