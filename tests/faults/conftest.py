"""Fault tests: real containers, real failures. Every test must leave nothing behind.

``no_leftovers`` (autouse) records which containers the test created (Docker's own event log,
filtered by this session's label) and fails the test if any of them still exists afterwards, if
any host process still names one of them (a containerd shim, a stray client), or if a volume
with the session label appeared.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from fault_helpers import created_since, host_processes_naming

#: How long a test may take to let go of what it made (removal is asynchronous in places).
SETTLE_SECONDS = 15.0


@pytest.fixture(autouse=True)
def no_leftovers(docker_engine: Any, session_label: str) -> Iterator[None]:
    client = docker_engine
    volumes_before = {v.name for v in client.volumes.list(filters={"label": session_label})}
    existing = {c["Id"] for c in client.api.containers(all=True, filters={"label": session_label})}
    start = time.time() - 1
    yield
    ids = created_since(client, start, session_label) - existing  # not the module's shared sandboxes
    deadline = time.monotonic() + SETTLE_SECONDS
    while True:
        alive = {c["Id"] for c in client.api.containers(all=True, filters={"label": session_label}) if c["Id"] in ids}
        procs = host_processes_naming(ids)
        if not alive and not procs:
            break
        if time.monotonic() > deadline:
            pytest.fail(f"left behind: containers {sorted(alive)}, processes {procs}", pytrace=False)
        time.sleep(0.3)
    volumes_after = {v.name for v in client.volumes.list(filters={"label": session_label})}
    assert volumes_after <= volumes_before, f"volumes left behind: {volumes_after - volumes_before}"
