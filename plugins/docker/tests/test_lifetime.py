"""Lifetimes hold without the client: timeout, idle_timeout, a SIGKILLed client, and ``sandboxkit gc``."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import docker.errors
import pytest
from sandboxkit_docker.images import BUSYBOX_IMAGE

from sandboxkit import ErrorCode, Sandbox, SandboxError

pytestmark = pytest.mark.usefixtures("docker_engine")
SANDBOXKIT = str(Path(sys.executable).with_name("sandboxkit"))

CLIENT = """
import time
from sandboxkit import Sandbox
short = Sandbox.create(timeout=4)
long = Sandbox.create(timeout=300)
print(short.id, long.id, flush=True)
time.sleep(600)
"""


def _running(docker_engine: Any, container_id: str) -> bool:
    try:
        return bool(docker_engine.containers.get(container_id).status == "running")
    except docker.errors.NotFound:
        return False


def _wait_for(check: Callable[[], bool], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.25)
    return check()


@pytest.mark.parametrize("idle_timeout", [None, 60], ids=["pid1-sleep", "pid1-watchdog"])
def test_the_container_ends_by_itself_at_its_timeout(docker_engine: Any, idle_timeout: float | None) -> None:
    sb = Sandbox.create(timeout=2, idle_timeout=idle_timeout)
    assert sb.execute("echo up").stdout == "up\n"
    assert _wait_for(lambda: not _running(docker_engine, sb.id), 12), "still running long after its timeout"
    with pytest.raises(SandboxError) as err:
        sb.execute("echo late")
    assert err.value.code == ErrorCode.SANDBOX_NOT_FOUND
    sb.close()


def test_idle_timeout_ends_an_idle_sandbox_and_spares_a_busy_one(docker_engine: Any) -> None:
    with Sandbox.create(idle_timeout=2, timeout=120) as idle, Sandbox.create(idle_timeout=2, timeout=120) as busy:
        started = time.monotonic()
        assert busy.execute("sleep 6; echo done", timeout=30).stdout == "done\n"  # busy for 3x the idle timeout
        assert time.monotonic() - started >= 6
        assert busy.execute("echo still here").stdout == "still here\n"
        assert _wait_for(lambda: not _running(docker_engine, idle.id), 6), "an idle sandbox outlived idle_timeout"
        with pytest.raises(SandboxError) as err:
            idle.execute("true")
        assert err.value.code == ErrorCode.SANDBOX_NOT_FOUND
        assert busy.execute("echo $SANDBOXKIT_IDLE_TIMEOUT").stdout.strip() == "2"
        assert _wait_for(lambda: not _running(docker_engine, busy.id), 10), "idle after its commands, yet alive"


def _gc(session_label: str, *extra: str) -> subprocess.CompletedProcess[str]:
    label = session_label.removeprefix("sandboxkit.label.")
    return subprocess.run(
        [SANDBOXKIT, "gc", "--label", label, "--json", *extra], capture_output=True, text=True, timeout=60
    )


def test_a_sigkilled_client_leaves_nothing_past_timeout_and_gc(docker_engine: Any, session_label: str) -> None:
    mine = Sandbox.create(timeout=120)  # owned by this live process: gc must keep it
    client = subprocess.Popen([sys.executable, "-c", CLIENT], stdout=subprocess.PIPE, text=True, env=os.environ)
    try:
        assert client.stdout is not None
        short_id, long_id = client.stdout.readline().split()
    finally:
        client.send_signal(signal.SIGKILL)
        client.wait(timeout=10)
    # the client never closed anything; the short sandbox still ends at its timeout, by itself
    assert _wait_for(lambda: not _running(docker_engine, short_id), 15)
    assert _running(docker_engine, long_id)
    # a container the dead client created but never started (killed between create and start)
    owner = docker_engine.containers.get(long_id).labels["sandboxkit.owner"]
    unstarted = docker_engine.containers.create(
        BUSYBOX_IMAGE,
        ["sleep", "300"],
        labels={
            "sandboxkit.managed": "1",
            "sandboxkit.provider": "docker",
            "sandboxkit.app": "sandboxkit",
            "sandboxkit.created_at": f"{time.time():.3f}",
            "sandboxkit.owner": owner,
            session_label.split("=")[0]: session_label.split("=")[1],
        },
    )
    try:
        dry = _gc(session_label, "--dry-run")
        assert dry.returncode == 0, dry.stderr
        found = {row["id"]: row for row in json.loads(dry.stdout)}
        assert found.keys() == {long_id, unstarted.id}, found
        assert found[long_id]["reason"] == "owner_gone"
        assert found[unstarted.id]["reason"] == "never_started"
        assert not any(row["removed"] for row in found.values())
        assert _running(docker_engine, long_id)

        reaped = _gc(session_label)
        assert reaped.returncode == 0, reaped.stderr
        assert {row["id"] for row in json.loads(reaped.stdout) if row["removed"]} == {long_id, unstarted.id}
        assert not _running(docker_engine, long_id)
        with pytest.raises(docker.errors.NotFound):
            docker_engine.containers.get(unstarted.id)
        assert mine.execute("echo kept").stdout == "kept\n"
    finally:
        mine.close()
        for leftover in (long_id, unstarted.id):
            try:
                docker_engine.api.remove_container(leftover, force=True)
            except docker.errors.NotFound:
                pass
