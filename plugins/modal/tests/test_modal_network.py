"""Outbound allowlists through the real modal SDK, enforced by the emulator with the Docker egress."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import modal
import modal.experimental
import pytest
from sandboxkit_conformance.testhosts import PROBE, NetworkHosts

pytestmark = pytest.mark.usefixtures("modal_env")


@pytest.fixture(scope="module")
def app() -> modal.App:
    return modal.App.lookup(f"sbk-net-{uuid.uuid4().hex[:8]}", create_if_missing=True)


@pytest.fixture(scope="module")
def sb(app: modal.App, network_test_hosts: NetworkHosts) -> Iterator[modal.Sandbox]:
    sandbox = modal.Sandbox.create(
        app=app,
        image=modal.Image.from_registry("debian:bookworm-slim"),
        timeout=300,
        outbound_domain_allowlist=[network_test_hosts.allowed],
    )
    sandbox.filesystem.write_text(PROBE, "/tmp/probe.py")
    yield sandbox
    sandbox.terminate()


def probe(sb: modal.Sandbox, *args: str) -> dict[str, Any]:
    p = sb.exec("python3", "/tmp/probe.py", *args)
    out = p.stdout.read()
    assert p.wait() == 0, p.stderr.read()
    found: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return found


def test_the_domain_allowlist_holds_and_changes_at_runtime(sb: modal.Sandbox, network_test_hosts: NetworkHosts) -> None:
    hosts = network_test_hosts
    assert probe(sb, "direct", f"http://{hosts.allowed}/")["ok"]
    denied = probe(sb, "direct", f"http://{hosts.denied}/")
    assert not denied["ok"] and denied["seconds"] < 5, denied
    assert not probe(sb, "tcp", hosts.denied_ip, "80", hosts.denied)["ok"]
    sb._experimental_set_outbound_network_policy(outbound_cidr_allowlist=[f"{hosts.denied_ip}/32"])
    assert probe(sb, "tcp", hosts.denied_ip, "80", hosts.denied)["ok"]
    assert not probe(sb, "direct", f"http://{hosts.allowed}/")["ok"]


def test_side_doors_are_closed(sb: modal.Sandbox, network_test_hosts: NetworkHosts) -> None:
    """A client ignoring the proxy and DNS, DNS of a denied name, UDP other than DNS, IPv6."""
    hosts = network_test_hosts
    sb._experimental_set_outbound_network_policy(outbound_domain_allowlist=[hosts.allowed])
    for found in (
        probe(sb, "dns", hosts.denied),
        probe(sb, "tcp", hosts.allowed_ip, "80", hosts.allowed),  # the allowed host's own address, not its name
        probe(sb, "udp", hosts.allowed_ip, "9999"),
        probe(sb, "tcp6", "fd00::1", "80"),
    ):
        assert not found["ok"] and found["seconds"] < 5, found
    dns = probe(sb, "dnsq", hosts.denied_ip, hosts.denied)  # answered by the egress, by the policy
    assert dns["rcode"] == 3, dns


def test_wildcards_match_names_below_only(sb: modal.Sandbox, network_test_hosts: NetworkHosts) -> None:
    hosts = network_test_hosts
    sb._experimental_set_outbound_network_policy(outbound_domain_allowlist=[f"*.{hosts.allowed}"])
    try:
        assert probe(sb, "direct", f"http://{hosts.allowed_alias}/")["ok"]
        assert not probe(sb, "direct", f"http://{hosts.allowed}/")["ok"]
    finally:
        sb._experimental_set_outbound_network_policy(outbound_domain_allowlist=[hosts.allowed])


def test_ipv6_cidrs_are_invalid(app: modal.App, sb: modal.Sandbox) -> None:
    with pytest.raises(modal.exception.InvalidError, match="IPv4"):
        sb._experimental_set_outbound_network_policy(outbound_cidr_allowlist=["fd00::/8"])
    with pytest.raises(modal.exception.InvalidError, match="IPv4"):
        modal.Sandbox.create(
            app=app, image=modal.Image.from_registry("debian:bookworm-slim"), outbound_cidr_allowlist=["2001:db8::/32"]
        )


def test_a_sandbox_cannot_reach_another_sandboxs_egress(
    app: modal.App, sb: modal.Sandbox, network_test_hosts: NetworkHosts
) -> None:
    hosts = network_test_hosts
    sb._experimental_set_outbound_network_policy(outbound_domain_allowlist=[hosts.allowed])
    other = modal.Sandbox.create(
        app=app,
        image=modal.Image.from_registry("debian:bookworm-slim"),
        timeout=300,
        outbound_domain_allowlist=[hosts.denied],
    )
    try:
        other.filesystem.write_text(PROBE, "/tmp/probe.py")
        theirs = probe(other, "dns", hosts.denied)["addr"]
        assert theirs != probe(sb, "dns", hosts.allowed)["addr"]
        for port in ("3128", "15001", "80"):
            found = probe(sb, "tcp", theirs, port, hosts.denied)
            assert not found["ok"] and found["seconds"] < 5, (port, found)
        assert not probe(sb, "direct", f"http://{hosts.denied}/")["ok"]
        assert probe(other, "direct", f"http://{hosts.denied}/")["ok"]
    finally:
        other.terminate()


def test_opening_the_network_at_runtime_is_refused(sb: modal.Sandbox) -> None:
    with pytest.raises(modal.exception.Error, match="allowlists only"):
        sb._experimental_set_outbound_network_policy()


def test_header_policies_are_refused_not_ignored(app: modal.App) -> None:
    policy = modal.experimental.OutboundPolicy().with_header_replacement(domain="allowed.test", headers={"X-A": "1"})
    with pytest.raises(modal.exception.Error, match="outbound header policies"):
        modal.Sandbox.create(
            app=app, image=modal.Image.from_registry("debian:bookworm-slim"), _experimental_outbound_policy=policy
        )
