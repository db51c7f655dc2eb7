"""Network policy (NETWORK_POLICY) and credential injection (CREDENTIAL_INJECTION), against two test hosts.

The provider's conftest serves the hosts through the ``sandboxkit_network_hosts`` fixture (see
``sandboxkit_conformance.testhosts``): ``allowed.test`` and ``denied.test``, offline. The sandbox
image needs python3 (the probe is a small Python script).
"""

from __future__ import annotations

import json
import secrets
from typing import Any

from sandboxkit import Capability, ErrorCode, HeaderInjection, NetworkPolicy, Sandbox
from sandboxkit_conformance._target import MakeSecret, SandboxPool, requires
from sandboxkit_conformance.suite._support import expect_error
from sandboxkit_conformance.testhosts import PROBE, NetworkHosts

__all__ = ["TestCredentialInjection", "TestNetworkPolicy"]

CA_PATH = "/tmp/sbkc-hosts-ca.pem"


def _sandbox(sandboxes: SandboxPool, hosts: NetworkHosts, policy: NetworkPolicy) -> Sandbox:
    sandbox = sandboxes.create(network=policy, **hosts.options)
    sandbox.write_file("/tmp/sbkc_probe.py", PROBE)
    sandbox.write_file(CA_PATH, hosts.ca_pem)
    return sandbox


def _probe(sandbox: Sandbox, *args: str) -> dict[str, Any]:
    result = sandbox.execute(["python3", "/tmp/sbkc_probe.py", *args], timeout=60)
    assert result.exit_code == 0, f"the probe failed: {result.output[-500:]}"
    found: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return found


def _refused_fast(found: dict[str, Any], what: str) -> None:
    assert not found["ok"], f"{what} must be refused, but it went through: {found}"
    assert found["seconds"] < 5, f"{what} must fail fast (refused, 403, NXDOMAIN), not hang: {found}"


@requires(Capability.NETWORK_POLICY)
class TestNetworkPolicy:
    """``network=NetworkPolicy(...)``: only what it names is reachable; ``set_network`` changes it live."""

    def test_allowed_and_denied_by_name(self, sandboxes: SandboxPool, sandboxkit_network_hosts: NetworkHosts) -> None:
        hosts = sandboxkit_network_hosts
        sandbox = _sandbox(sandboxes, hosts, NetworkPolicy(allow_domains=[hosts.allowed], upstream_ca=hosts.ca_pem))
        assert sandbox.network is not None and list(sandbox.network.allow_domains) == [hosts.allowed]
        for kind in ("proxy", "direct"):
            found = _probe(sandbox, kind, f"https://{hosts.allowed}/", CA_PATH)
            assert found["ok"] and found["body"]["server"] == "allowed", f"{kind} HTTPS to the allowed host: {found}"
            _refused_fast(_probe(sandbox, kind, f"http://{hosts.denied}/"), f"{kind} HTTP to {hosts.denied}")
        _refused_fast(_probe(sandbox, "dns", hosts.denied), f"resolving {hosts.denied}")
        _refused_fast(_probe(sandbox, "tcp", hosts.denied_ip, "80", hosts.denied), "a raw socket to the denied host")

    def test_cidr_and_runtime_update(self, sandboxes: SandboxPool, sandboxkit_network_hosts: NetworkHosts) -> None:
        hosts = sandboxkit_network_hosts
        sandbox = _sandbox(sandboxes, hosts, NetworkPolicy(allow_domains=[hosts.allowed]))
        assert _probe(sandbox, "direct", f"http://{hosts.allowed}/")["ok"]
        sandbox.set_network(NetworkPolicy(allow_cidrs=[f"{hosts.denied_ip}/32"]))
        assert sandbox.network == NetworkPolicy(allow_cidrs=[f"{hosts.denied_ip}/32"])
        found = _probe(sandbox, "tcp", hosts.denied_ip, "80", hosts.denied)
        assert found["ok"], f"a raw socket to an allowed CIDR must connect: {found}"
        _refused_fast(_probe(sandbox, "direct", f"http://{hosts.allowed}/"), "the name the new policy dropped")

    def test_wildcards_and_side_doors(self, sandboxes: SandboxPool, sandboxkit_network_hosts: NetworkHosts) -> None:
        """``*.name`` allows the names below it only; UDP other than DNS and IPv6 fail fast."""
        hosts = sandboxkit_network_hosts
        sandbox = _sandbox(sandboxes, hosts, NetworkPolicy(allow_domains=[f"*.{hosts.allowed}"]))
        found = _probe(sandbox, "direct", f"http://{hosts.allowed_alias}/")
        assert found["ok"], f"*.{hosts.allowed} must allow {hosts.allowed_alias}: {found}"
        _refused_fast(_probe(sandbox, "direct", f"http://{hosts.allowed}/"), f"{hosts.allowed} under *.{hosts.allowed}")
        _refused_fast(_probe(sandbox, "udp", hosts.allowed_ip, "9999"), "UDP (not DNS) to the allowed host")
        _refused_fast(_probe(sandbox, "udp", hosts.denied_ip, "9999"), "UDP (not DNS) to the denied host")
        _refused_fast(_probe(sandbox, "tcp6", "fd00::1", "80"), "a TCP connection over IPv6")

    def test_denied_attempts_are_in_the_network_log(
        self, sandboxes: SandboxPool, sandboxkit_network_hosts: NetworkHosts
    ) -> None:
        hosts = sandboxkit_network_hosts
        sandbox = _sandbox(sandboxes, hosts, NetworkPolicy(allow_domains=[hosts.allowed]))
        _probe(sandbox, "proxy", f"http://{hosts.denied}/")
        denied = [e for e in sandbox.network_log() if e.verdict == "denied"]
        assert any(e.host == hosts.denied for e in denied), f"no denied event for {hosts.denied}: {denied}"

    def test_a_malformed_policy_is_invalid_argument(self, sandboxes: SandboxPool) -> None:
        with expect_error(ErrorCode.INVALID_ARGUMENT, "a domain with a space"):
            sandboxes.create(network={"allow_domains": ["not a domain"]})


@requires(Capability.NETWORK_POLICY, Capability.CREDENTIAL_INJECTION)
class TestCredentialInjection:
    """``HeaderInjection``: the header reaches the host; the secret's value never enters the sandbox."""

    def test_header_reaches_the_host_not_the_sandbox(
        self, sandboxes: SandboxPool, sandboxkit_network_hosts: NetworkHosts, sandboxkit_make_secret: MakeSecret
    ) -> None:
        hosts = sandboxkit_network_hosts
        value = f"sbkc-{secrets.token_hex(12)}"
        name = sandboxkit_make_secret({"SBKC_TOKEN": value})
        policy = NetworkPolicy(
            allow_domains=[hosts.allowed],
            inject=[HeaderInjection(domain=hosts.allowed, secret=name, headers={"X-Sbkc-Key": "k=$SBKC_TOKEN"})],
            upstream_ca=hosts.ca_pem,
        )
        sandbox = _sandbox(sandboxes, hosts, policy)
        found = _probe(sandbox, "proxy", f"https://{hosts.allowed}/")
        assert found["ok"], f"HTTPS to the injected host (trusting the sandbox's default CAs): {found}"
        assert found["body"]["headers"].get("X-Sbkc-Key") == f"k={value}"
        seen = sandbox.execute("env; cat /proc/[0-9]*/environ 2>/dev/null | tr '\\0' '\\n'").stdout
        assert value not in seen, "the secret's value is visible inside the sandbox"

    def test_a_template_key_the_secret_lacks_is_invalid_argument(
        self, sandboxes: SandboxPool, sandboxkit_network_hosts: NetworkHosts, sandboxkit_make_secret: MakeSecret
    ) -> None:
        hosts = sandboxkit_network_hosts
        name = sandboxkit_make_secret({"SBKC_TOKEN": "x"})
        rule = HeaderInjection(domain=hosts.allowed, secret=name, headers={"X": "$SBKC_OTHER"})
        with expect_error(ErrorCode.INVALID_ARGUMENT, "a template naming a key the secret lacks"):
            sandboxes.create(network=NetworkPolicy(allow_domains=[hosts.allowed], inject=[rule]), **hosts.options)
