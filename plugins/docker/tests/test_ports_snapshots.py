"""Docker specifics of ports and snapshots: loopback-only publishing, image labels, gc of expired snapshots."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import docker
import pytest
from sandboxkit_docker import _labels, _snapshots

import sandboxkit
from sandboxkit import ErrorCode, Sandbox, SandboxError

pytestmark = pytest.mark.docker

BASE: dict[str, Any] = {"image": "sandboxkit/base:bookworm", "provider_options": {"pull": "never"}}


@pytest.fixture
def client(docker_engine: docker.DockerClient) -> docker.DockerClient:
    return docker_engine


@pytest.fixture
def made() -> Iterator[list[Sandbox]]:
    sandboxes: list[Sandbox] = []
    yield sandboxes
    for sandbox in sandboxes:
        sandbox.close()


def test_ports_are_published_on_loopback_only_with_the_sandbox_labels(
    client: docker.DockerClient, made: list[Sandbox], session_label: str
) -> None:
    sandbox = Sandbox.create(ports=[8000, 9000], **BASE)
    made.append(sandbox)
    rows = client.api.containers(filters={"id": sandbox.id, "label": session_label})
    assert len(rows) == 1, "docker ps must show the sandbox with its labels"
    published = {(p["PrivatePort"], p.get("IP")) for p in rows[0]["Ports"] if "PublicPort" in p}
    assert published == {(8000, "127.0.0.1"), (9000, "127.0.0.1")}, rows[0]["Ports"]
    assert rows[0]["Labels"]["sandboxkit.ports"] == "8000,9000"
    host_ports = {p["PublicPort"] for p in rows[0]["Ports"] if "PublicPort" in p}
    assert all(port >= 1024 for port in host_ports), "ports must be ephemeral host ports"
    assert {t.host_port for t in sandbox.tunnels().values()} == host_ports


def test_a_snapshot_carries_no_sandbox_label_into_its_sandboxes(
    client: docker.DockerClient, made: list[Sandbox], session_label: str
) -> None:
    source = Sandbox.create(memory_mib=256, tags={"team": "a"}, env={"FROM_SOURCE": "1"}, **BASE)
    made.append(source)
    snap = source.snapshot(ttl=600)
    try:
        image = client.images.get(_snapshots.image_ref(snap.id))
        labels = image.labels
        assert labels[_snapshots.MANAGED] == "1" and float(labels[_snapshots.EXPIRES_AT]) > time.time()
        key, _, value = session_label.partition("=")
        assert labels[f"{_snapshots.USER}{key.rpartition('.')[2]}"] == value, "the snapshot keeps the session label"
        assert "sandboxkit.label.owner" not in labels or not labels["sandboxkit.label.owner"]
        blanked = {k: v for k, v in labels.items() if _labels.is_sandbox_label(k)}
        assert blanked and all(v == "" for v in blanked.values()), labels
        base = client.images.get(BASE["image"]).labels or {}
        assert all(labels[k] == v for k, v in base.items()), "the image's own labels stay"
        started = Sandbox.create(snapshot=snap, provider_options={"pull": "never"})
        made.append(started)
        memory = started.handle.labels.get("sandboxkit.memory_mib")  # type: ignore[attr-defined]
        assert memory != "256", "the source's memory limit must not carry over (the default cap applies)"
        infos = [i for i in Sandbox.list("docker", tags={"team": "a"}) if i.id == started.id]
        assert not infos, "tags of the source must not carry over"
        assert started.execute("echo ok").stdout == "ok\n"
        with pytest.raises(SandboxError) as refused:
            snap.delete()
        assert refused.value.code == ErrorCode.INVALID_ARGUMENT and "in use" in str(refused.value)
    finally:
        for sandbox in made:
            sandbox.close()
        made.clear()
        snap.delete()
    assert not client.images.list(name=_snapshots.REPOSITORY, filters={"label": f"{_snapshots.SOURCE}={source.id}"})


def test_gc_reaps_expired_snapshots_only(made: list[Sandbox], session_label: str) -> None:
    source = Sandbox.create(**BASE)
    made.append(source)
    short = source.snapshot(ttl=1)
    long = source.snapshot(ttl=3600)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and short.expires_at and short.expires_at.timestamp() > time.time():
            time.sleep(0.2)
        key, _, value = session_label.partition("=")
        stale = sandboxkit.gc("docker", labels={key.rpartition(".")[2]: value})
        reaped = [s.id for s in stale if s.reason == "snapshot_expired" and s.removed]
        assert short.id in reaped and long.id not in reaped
        assert short.id not in [s.id for s in sandboxkit.snapshots("docker")]
        assert long.id in [s.id for s in sandboxkit.snapshots("docker")]
    finally:
        long.delete()


def test_unknown_and_malformed_snapshot_ids_are_invalid() -> None:
    for bad in ("snap-0000000000000000", "not-a-snapshot"):
        with pytest.raises(SandboxError) as caught:
            Sandbox.create(snapshot=bad, provider_options={"pull": "never"})
        assert caught.value.code == ErrorCode.INVALID_ARGUMENT, caught.value
    with pytest.raises(SandboxError) as both:
        Sandbox.create(snapshot="snap-0000000000000000", **BASE)
    assert both.value.code == ErrorCode.INVALID_ARGUMENT
