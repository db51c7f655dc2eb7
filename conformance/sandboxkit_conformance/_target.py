"""The provider under test: its name, declared capabilities, create options and known failures.

One :class:`ConformanceTarget` exists per (provider, create options) in a pytest session. It
creates every sandbox the suite uses, labels each one with the session label and remembers it,
so that the reaper can end whatever is left, whatever happened to the tests.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, entry_points, version
from typing import Any

import pytest

from sandboxkit import Capability, Sandbox, SandboxError, providers

try:
    SUITE_VERSION = version("sandboxkit-conformance")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    SUITE_VERSION = "0.0.0"

#: Label key every suite sandbox carries; its value is the session id.
LABEL_KEY = "conformance_session"
#: Env var that fixes the session id (else a random one): lets a wrapper find the sandboxes of a run.
SESSION_ENV = "SANDBOXKIT_CONFORMANCE_SESSION"
#: Marker name behind :data:`requires`.
REQUIRES_MARK = "sandboxkit_requires"
#: Marker that files a test under a capability in the report without gating it (the refusal checks).
ABOUT_MARK = "sandboxkit_about"

#: ``@requires(Capability.GPU)``: the test (or class) runs only where the provider declares it.
requires = pytest.mark.sandboxkit_requires
#: ``about(Capability.GPU)``: report the test under that capability; it runs whatever is declared.
about = pytest.mark.sandboxkit_about

#: ``make_volume() -> name``: create a fresh, empty named volume for one test and remove it afterwards.
MakeVolume = Callable[[], str]
#: ``make_secret({"KEY": "value"}) -> name``: create a named secret for one test and remove it afterwards.
MakeSecret = Callable[[Mapping[str, str]], str]


def new_session_id() -> str:
    """``$SANDBOXKIT_CONFORMANCE_SESSION``, else a fresh random id."""
    return os.environ.get(SESSION_ENV) or uuid.uuid4().hex[:12]


def check_expected_failures(table: object, provider: str, catalog: Mapping[str, set[str]]) -> dict[str, str]:
    """Validate the provider's known-failures table against ``catalog`` (class -> test names): a reason each."""
    where = f"sandboxkit_expected_failures of provider {provider!r}"
    if not isinstance(table, Mapping):
        pytest.fail(f"{where} must return a dict of test name -> reason, got {type(table).__name__}", pytrace=False)
    problems = []
    for key, reason in table.items():
        if not isinstance(reason, str) or not reason.strip():
            problems.append(f"{key!r}: a reason is required (a sentence, an issue link)")
        cls, _, test = str(key).partition("::")
        test = test.partition("[")[0]
        if cls not in catalog or (test and test not in catalog[cls]):
            problems.append(f"{key!r}: no such suite test; use 'TestClass::test_name' (optionally '[param]')")
    if problems:
        pytest.fail(f"{where} is invalid:\n  " + "\n  ".join(problems), pytrace=False)
    return {str(k): str(v) for k, v in table.items()}


def provider_version(name: str) -> str:
    """The version of the distribution that registers provider ``name`` (``unknown`` when in-process)."""
    plugin = next((s.plugin for s in providers() if s.name == name), "")
    for ep in entry_points(group="sandboxkit", name=plugin):
        if ep.dist is not None:
            return ep.dist.version
    return "unknown"


def _merge(base: Mapping[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    """``extra`` over ``base``; dict-valued options (labels, env, provider_options, ...) merge one level deep."""
    merged = dict(base)
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = {**merged[key], **value}
        else:
            merged[key] = value
    return merged


@dataclass(eq=False)
class ConformanceTarget:
    """The provider under test, and the sandboxes the suite created on it."""

    #: registry name (``provider=``)
    provider: str
    #: version of the provider's distribution
    provider_version: str
    #: what the provider declares
    capabilities: frozenset[Capability]
    #: options passed to every sandbox the suite creates (the provider's conftest sets them)
    create_options: Mapping[str, Any]
    #: known failures: suite test name -> reason; they run as strict xfail
    expected_failures: Mapping[str, str]
    #: the session id every sandbox is labelled with
    session: str
    #: sandboxes created and not yet closed, by id
    open: dict[str, Sandbox] = field(default_factory=dict)
    #: ids of sandboxes the suite closed (a provider that still lists them leaks)
    closed_ids: set[str] = field(default_factory=set)

    @classmethod
    def resolve(
        cls,
        provider: object,
        create_options: object,
        expected_failures: object,
        session: str,
        catalog: Mapping[str, set[str]],
    ) -> ConformanceTarget:
        """Look the provider up and check the conftest's fixtures; fail with what to fix."""
        if not isinstance(provider, str) or not provider:
            pytest.fail(f"sandboxkit_provider must return a provider name (str), got {provider!r}", pytrace=False)
        if not isinstance(create_options, Mapping):
            pytest.fail(
                f"sandboxkit_create_options must return a dict of Sandbox.create options, got {create_options!r}",
                pytrace=False,
            )
        try:
            capabilities = Sandbox(provider).capabilities
        except SandboxError as exc:
            problem = str(exc)
        else:
            problem = ""
        if problem:
            pytest.fail(f"the conformance suite cannot load provider {provider!r}: {problem}", pytrace=False)
        return cls(
            provider=provider,
            provider_version=provider_version(provider),
            capabilities=frozenset(capabilities),
            create_options=dict(create_options),
            expected_failures=check_expected_failures(expected_failures, provider, catalog),
            session=session,
        )

    # ------------------------------------------------------------ capabilities
    @property
    def labels(self) -> dict[str, str]:
        """The session label, as ``labels=`` and ``list(labels=...)`` take it."""
        return {LABEL_KEY: self.session}

    def declares(self, capability: Capability) -> bool:
        """True when the provider declares ``capability``."""
        return capability in self.capabilities

    def missing(self, capabilities: Iterable[Capability]) -> list[Capability]:
        """The ones of ``capabilities`` the provider does not declare."""
        return [c for c in capabilities if c not in self.capabilities]

    def skip_reason(self, capabilities: Iterable[Capability]) -> str | None:
        """Why a test needing ``capabilities`` cannot run here, or None."""
        lacking = self.missing(capabilities)
        if not lacking:
            return None
        names = ", ".join(f"{c.value!r} (Capability.{c.name})" for c in lacking)
        return f"provider {self.provider!r} does not declare capability {names}"

    def gate(self, node: pytest.Item | pytest.Collector) -> None:
        """Skip ``node`` (a test or a class) unless every capability its markers require is declared."""
        needed = [cap for mark in node.iter_markers(REQUIRES_MARK) for cap in mark.args]
        reason = self.skip_reason(needed)
        if reason:
            pytest.skip(reason)

    def expected_failure(self, item: pytest.Item) -> str | None:
        """The reason from the known-failures table when ``item`` is listed there."""
        cls = item.cls.__name__ if getattr(item, "cls", None) is not None else ""  # type: ignore[attr-defined]
        original = getattr(item, "originalname", item.name)
        for key in (f"{cls}::{item.name}", f"{cls}::{original}", cls):
            if key in self.expected_failures:
                return self.expected_failures[key]
        return None

    # ------------------------------------------------------------ sandboxes
    def options(self, **extra: Any) -> dict[str, Any]:
        """The provider's create options, then ``extra``, plus the session label."""
        merged = _merge(self.create_options, extra)
        merged["labels"] = {**dict(merged.get("labels") or {}), **self.labels}
        return merged

    def create(self, **options: Any) -> Sandbox:
        """Create a labelled sandbox; the caller closes it through :meth:`close` (the reaper otherwise)."""
        sandbox = Sandbox.create(self.provider, **self.options(**options))
        self.open[sandbox.id] = sandbox
        return sandbox

    def track(self, sandbox: Sandbox) -> Sandbox:
        """Remember a sandbox a test created itself (two-step form), so it is closed at the end."""
        self.open[sandbox.id] = sandbox
        return sandbox

    def close(self, sandbox: Sandbox) -> None:
        """Close a sandbox and remember that the suite closed it."""
        try:
            sandbox.close()
        finally:
            self.open.pop(sandbox.id, None)
            self.closed_ids.add(sandbox.id)

    def describe(self) -> str:
        """One line for the report header."""
        caps = ", ".join(sorted(c.value for c in self.capabilities)) or "none"
        return f"provider {self.provider!r} (version {self.provider_version}), capabilities: {caps}"


class SandboxPool:
    """Creates sandboxes for one test and closes them when it ends."""

    def __init__(self, target: ConformanceTarget) -> None:
        self.target = target
        self.created: list[Sandbox] = []

    def create(self, **options: Any) -> Sandbox:
        """A labelled sandbox with the provider's create options plus ``options``."""
        sandbox = self.target.create(**options)
        self.created.append(sandbox)
        return sandbox

    def close_all(self) -> None:
        """Close every sandbox this test created (closing twice is fine)."""
        errors = []
        for sandbox in self.created:
            try:
                self.target.close(sandbox)
            except SandboxError as exc:
                errors.append(exc)
        if errors:
            raise errors[0]
