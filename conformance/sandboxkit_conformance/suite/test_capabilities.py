"""Capabilities: what a provider declares is a set of ``Capability``; asking for the rest is refused up front."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from sandboxkit import (
    Capability,
    CapabilityNotSupportedError,
    ErrorCode,
    HeaderInjection,
    NetworkPolicy,
    Sandbox,
)
from sandboxkit_conformance._target import ConformanceTarget, about
from sandboxkit_conformance.suite._support import assert_nothing_left, expect_error, probe_labels, unique

__all__ = ["TestCapabilities"]

#: Create options that need each create-time capability.
CREATE_TRIGGERS: dict[Capability, list[dict[str, Any]]] = {
    Capability.GPU: [{"gpu": "T4"}],
    Capability.VOLUMES: [{"volumes": {"/sbkc-data": "sbkc-volume"}}],
    Capability.SECRETS: [{"secrets": ["sbkc-secret"]}],
    Capability.NETWORK_BLOCK: [{"block_network": True}],
    Capability.NAMED: [{"name": "sbkc-named"}],
    Capability.TAGS: [{"tags": {"sbkc": "tag"}}],
    Capability.IDLE_TIMEOUT: [{"idle_timeout": 60}],
    Capability.RESOURCE_LIMITS: [{"cpu": 1.0}, {"memory_mib": 256}],
    Capability.PORTS: [{"ports": [8000]}],
    Capability.SNAPSHOTS: [{"snapshot": "sbkc-snapshot"}],
    Capability.NETWORK_POLICY: [{"network": NetworkPolicy(allow_domains=["allowed.test"])}],
    Capability.CREDENTIAL_INJECTION: [
        {
            "network": NetworkPolicy(
                allow_domains=["allowed.test"],
                inject=[HeaderInjection(domain="allowed.test", secret="sbkc-secret", headers={"X-Key": "$KEY"})],
            )
        }
    ],
}


def _other_triggers(target: ConformanceTarget, capability: Capability) -> list[tuple[str, Callable[[], Any]]]:
    """Calls other than create that need ``capability``; exec-time ones use a sandbox made on demand."""
    provider = target.provider
    calls: dict[Capability, list[tuple[str, Callable[[], Any]]]] = {
        Capability.NAMED: [("Sandbox.from_name()", lambda: Sandbox.from_name("sbkc-app", "sbkc-name", provider))],
        Capability.LIST: [("Sandbox.list()", lambda: Sandbox.list(provider))],
        Capability.RECONNECT: [("Sandbox.from_id()", lambda: Sandbox.from_id(unique("sbkc-id"), provider))],
    }
    if capability is Capability.TAGS and target.declares(Capability.LIST):
        calls[capability] = [("Sandbox.list(tags=...)", lambda: Sandbox.list(provider, tags={"sbkc": "tag"}))]
    return calls.get(capability, [])


EXEC_TRIGGERS: dict[Capability, tuple[str, Callable[[Sandbox], Any]]] = {
    Capability.STDIN: ("execute(stdin=...)", lambda sb: sb.execute("cat", stdin="x")),
    Capability.USER: ("execute(user=...)", lambda sb: sb.execute("id -u", user="65534")),
    Capability.STREAMING: ("stream()", lambda sb: list(sb.stream("echo x"))),
    Capability.PROCESSES: ("spawn()", lambda sb: sb.spawn("true")),
    Capability.PTY: ("spawn(pty=True)", lambda sb: sb.spawn("true", pty=True)),
}


class TestCapabilities:
    """Every provider: declared capabilities are known ones; every undeclared one is refused."""

    def test_declared_capabilities_are_capability_members(self, conformance: ConformanceTarget) -> None:
        declared = Sandbox(conformance.provider).capabilities
        assert isinstance(declared, frozenset)
        strays = [c for c in declared if not isinstance(c, Capability)]
        assert not strays, f"capabilities must be sandboxkit.Capability members, got {strays}"

    @pytest.mark.parametrize("capability", [pytest.param(c, id=c.value, marks=about(c)) for c in Capability])
    def test_an_undeclared_capability_is_refused(
        self, request: pytest.FixtureRequest, conformance: ConformanceTarget, capability: Capability
    ) -> None:
        if conformance.declares(capability):
            pytest.skip(f"provider {conformance.provider!r} declares {capability.value!r}; its own tests cover it")
        creates = CREATE_TRIGGERS.get(capability, [])
        others = _other_triggers(conformance, capability)
        exec_trigger = EXEC_TRIGGERS.get(capability)
        assert creates or others or exec_trigger, f"the suite knows no call that needs {capability!r}; add one"
        for options in creates:
            labels = probe_labels()
            with expect_error(ErrorCode.CAPABILITY_NOT_SUPPORTED, f"Sandbox.create(**{options!r})") as caught:
                conformance.create(labels=labels, **options)
            self._check(caught.error, capability)
            assert_nothing_left(conformance, labels, "a create was refused for an undeclared capability")
        for what, call in others:
            with expect_error(ErrorCode.CAPABILITY_NOT_SUPPORTED, what) as caught:
                call()
            self._check(caught.error, capability)
        if exec_trigger is not None:
            sandbox: Sandbox = request.getfixturevalue("shared_sandbox")
            what, run = exec_trigger
            with expect_error(ErrorCode.CAPABILITY_NOT_SUPPORTED, what) as caught:
                run(sandbox)
            self._check(caught.error, capability)

    @staticmethod
    def _check(error: Exception, capability: Capability) -> None:
        assert isinstance(error, CapabilityNotSupportedError) and isinstance(error, NotImplementedError)
        assert capability.value in str(error), f"the message must name the capability {capability.value!r}: {error}"
