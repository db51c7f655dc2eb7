"""Test-session plumbing shared by every test directory of the repo.

Every sandbox a test process creates (also through the CLI in a subprocess) carries the label
``sandboxkit.label.session=<uuid>`` via $SANDBOXKIT_LABELS, and is reaped at session end even
when tests fail. The one container allowed to outlive the suite is the Docker provider's warden
(``sandboxkit-warden``, shared by every client of the engine); a second one fails the run.
Tests that need Docker fail, never skip, when no engine answers.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

SESSION = uuid.uuid4().hex[:12]
os.environ["SANDBOXKIT_LABELS"] = f"session={SESSION}"
SESSION_LABEL = f"sandboxkit.label.session={SESSION}"
#: the label the session's filesystem snapshots (images) carry
SNAPSHOT_LABEL = f"sandboxkit.snapshot.label.session={SESSION}"


def _reap() -> list[str]:
    """Remove every container, volume and snapshot image of this session; return the containers that were left."""
    try:
        import docker
    except ImportError:
        return []
    try:
        client = docker.from_env(timeout=5)
    except Exception:
        return []
    leaked = []
    for c in client.api.containers(all=True, filters={"label": SESSION_LABEL}):
        leaked.append(f"{c['Id'][:12]} {c.get('Names', [''])[0]} ({c.get('State')})")
        try:
            client.api.remove_container(c["Id"], force=True, v=True)  # and its anonymous volumes (runsc /tmp)
        except Exception:
            pass
    # the Docker provider's warden is the one container meant to outlive the suite; never a second one
    for c in client.api.containers(all=True, filters={"label": "sandboxkit.warden"}):
        if c.get("Names") != ["/sandboxkit-warden"]:
            leaked.append(f"{c['Id'][:12]} {c.get('Names', [''])[0]} (a second warden)")
    for v in client.volumes.list(filters={"label": SESSION_LABEL}):
        try:
            v.remove(force=True)
        except Exception:
            pass
    for image in client.api.images(filters={"label": SNAPSHOT_LABEL}):
        for tag in image.get("RepoTags") or [image["Id"]]:
            try:
                client.api.remove_image(tag, force=True)
            except Exception:
                pass
    for n in client.api.networks(filters={"label": SESSION_LABEL}):  # egress and test-host networks
        try:
            client.api.remove_network(n["Id"])
        except Exception:
            pass
    client.close()
    return leaked


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark ``docker`` every test that uses the engine (through ``docker_engine``, even indirectly),
    so that ``pytest -m "not docker"`` is the fast lane that starts no real sandbox (the bwrap
    provider's tests mark themselves)."""
    for item in items:
        if "docker_engine" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.docker)


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Reap what is left after every other reaper ran; a leftover sandbox fails the run."""
    leaked = _reap()
    if leaked and exitstatus == 0 and os.environ.get("SANDBOXKIT_ALLOW_LEAKS") != "1":
        session.exitstatus = 1
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_line(
                f"FAILED: {len(leaked)} sandbox(es) of this session outlived their tests (now removed): "
                + "; ".join(leaked),
                red=True,
            )


@pytest.fixture(scope="session")
def docker_engine() -> Iterator[object]:
    """A docker-py client for a running engine; fails (never skips) when none answers."""
    import docker

    try:
        client = docker.from_env(timeout=5)
        client.ping()
    except Exception as exc:
        pytest.fail(
            f"these tests need a running Docker engine and none answered ({exc}); "
            "run `bash scripts/setup.sh` (as root) to install and start one",
            pytrace=False,
        )
    yield client
    client.close()


@pytest.fixture(scope="session")
def session_label() -> str:
    """The label every sandbox of this test session carries (``key=value``)."""
    return SESSION_LABEL


@pytest.fixture(scope="session")
def runsc_engine(docker_engine: Any) -> Any:
    """The docker-py client, once the engine is known to offer gVisor's ``runsc``; fails (never skips) without it."""
    runtimes = docker_engine.info().get("Runtimes") or {}
    if "runsc" not in runtimes:
        pytest.fail(
            f"the Docker engine has no runtime 'runsc' (it has: {', '.join(sorted(runtimes))}); scripts/setup.sh "
            "registers it with the dockerd it starts; on an engine you run yourself: "
            "`runsc install -- --platform=ptrace --network=host` and restart dockerd",
            pytrace=False,
        )
    return docker_engine
