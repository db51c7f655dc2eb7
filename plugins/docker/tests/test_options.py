"""The plain options keep Modal's meaning: image, workdir, env, block_network, name per app, app, tags."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from sandboxkit_docker.images import BUSYBOX_IMAGE
from sandboxkit_docker.provider import DockerProvider

from sandboxkit import Capability, ErrorCode, Sandbox, SandboxError

pytestmark = pytest.mark.usefixtures("docker_engine")


@pytest.fixture(scope="module")
def offline() -> Iterator[Sandbox]:
    """One sandbox with many options at once (module-shared: each test only reads it)."""
    with Sandbox.create(
        image=BUSYBOX_IMAGE,
        workdir="/work/here",
        env={"GREETING": "hello world", "EMPTY": ""},
        block_network=True,
        tags={"team": "infra", "run": uuid.uuid4().hex[:8]},
        app="sbk-options-test",
        name=f"opt-{uuid.uuid4().hex[:8]}",
    ) as sb:
        yield sb


def test_capabilities_are_declared_on_the_class() -> None:
    assert DockerProvider.capabilities >= {
        Capability.GPU,
        Capability.VOLUMES,
        Capability.SECRETS,
        Capability.IDLE_TIMEOUT,
        Capability.RESOURCE_LIMITS,
        Capability.NETWORK_BLOCK,
        Capability.NAMED,
        Capability.LIST,
        Capability.TAGS,
    }


def test_image_workdir_and_env(offline: Sandbox, docker_engine: Any) -> None:
    assert docker_engine.containers.get(offline.id).image.tags == [BUSYBOX_IMAGE]
    assert offline.execute("pwd").stdout == "/work/here\n"
    assert offline.execute('echo "$GREETING|${EMPTY-unset}"').stdout == "hello world|\n"
    assert offline.execute("echo $SANDBOXKIT_TIMEOUT").stdout.strip() == "300"


def test_block_network_leaves_only_loopback(offline: Sandbox) -> None:
    interfaces = [line.split(":")[0].strip() for line in offline.execute("cat /proc/net/dev").stdout.splitlines()[2:]]
    assert interfaces == ["lo"]
    routes = offline.execute("cat /proc/net/route").stdout.splitlines()
    assert routes[1:] == [], f"a route out exists: {routes}"


def test_a_sandbox_has_a_route_out_unless_blocked() -> None:
    # the contrast: without block_network there is an interface besides lo, and a default route
    with Sandbox.create(image=BUSYBOX_IMAGE) as sb:
        interfaces = {line.split(":")[0].strip() for line in sb.execute("cat /proc/net/dev").stdout.splitlines()[2:]}
        assert interfaces - {"lo"}
        assert len(sb.execute("cat /proc/net/route").stdout.splitlines()) > 1


def test_names_are_unique_per_app(offline: Sandbox) -> None:
    assert offline.name is not None
    with pytest.raises(SandboxError) as err:
        Sandbox.create(image=BUSYBOX_IMAGE, app="sbk-options-test", name=offline.name)
    assert err.value.code == ErrorCode.ALREADY_EXISTS
    with Sandbox.create(image=BUSYBOX_IMAGE, app="sbk-options-other", name=offline.name) as twin:
        assert twin.id != offline.id
    found = Sandbox.from_name("sbk-options-test", offline.name)
    assert found.id == offline.id


def test_list_filters_by_app_and_tags(offline: Sandbox) -> None:
    key, _, value = os.environ["SANDBOXKIT_LABELS"].partition("=")  # the root conftest's session label:
    mine = {key: value}  # other runs' sandboxes stay out of the way
    (info,) = Sandbox.list(app="sbk-options-test", labels=mine)
    run = info.tags["run"]
    assert [s.id for s in Sandbox.list(tags={"team": "infra", "run": run})] == [offline.id]
    assert Sandbox.list(tags={"team": "other", "run": run}) == []
    assert Sandbox.list(app="sbk-options-test", tags={"run": "nope"}, labels=mine) == []
    assert (info.name, info.app, dict(info.tags)["team"]) == (offline.name, "sbk-options-test", "infra")
