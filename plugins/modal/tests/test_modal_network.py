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


def test_opening_the_network_at_runtime_is_refused(sb: modal.Sandbox) -> None:
    with pytest.raises(modal.exception.Error, match="allowlists only"):
        sb._experimental_set_outbound_network_policy()


def test_header_policies_are_refused_not_ignored(app: modal.App) -> None:
    policy = modal.experimental.OutboundPolicy().with_header_replacement(domain="allowed.test", headers={"X-A": "1"})
    with pytest.raises(modal.exception.Error, match="outbound header policies"):
        modal.Sandbox.create(
            app=app, image=modal.Image.from_registry("debian:bookworm-slim"), _experimental_outbound_policy=policy
        )
