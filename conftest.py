"""Test-session plumbing shared by every test directory of the repo.

Every sandbox a test process creates (also through the CLI in a subprocess) carries the label
``sandboxkit.label.session=<uuid>`` via $SANDBOXKIT_LABELS, and is reaped at session end even
when tests fail. Tests that need Docker fail, never skip, when no engine answers.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest

SESSION = uuid.uuid4().hex[:12]
os.environ["SANDBOXKIT_LABELS"] = f"session={SESSION}"
SESSION_LABEL = f"sandboxkit.label.session={SESSION}"


def _reap() -> list[str]:
    """Remove every container and volume of this session; return the containers that were left."""
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
            client.api.remove_container(c["Id"], force=True)
        except Exception:
            pass
    for v in client.volumes.list(filters={"label": SESSION_LABEL}):
        try:
            v.remove(force=True)
        except Exception:
            pass
    for n in client.api.networks(filters={"label": SESSION_LABEL}):  # egress and test-host networks
        try:
            client.api.remove_network(n["Id"])
        except Exception:
            pass
    client.close()
    return leaked


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
