"""The warden container: started once and idempotently, out of every sandbox's reach, shown by the CLI."""

from __future__ import annotations

import io
import subprocess
import sys
import tarfile
import threading
import time
from pathlib import Path
from typing import Any

import docker
import pytest
from sandboxkit_docker import _warden

from sandboxkit import Sandbox

pytestmark = pytest.mark.usefixtures("docker_engine")
SANDBOXKIT = str(Path(sys.executable).with_name("sandboxkit"))


def _wardens(docker_engine: Any) -> list[dict[str, Any]]:
    return list(docker_engine.api.containers(all=True, filters={"label": _warden.LABEL}))


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([SANDBOXKIT, "warden", *args], capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("round_", range(3))  # the race is won differently each time
def test_clients_racing_to_start_it_make_exactly_one(docker_engine: Any, round_: int) -> None:
    _warden.stop(docker_engine.api)
    clients = [docker.from_env(timeout=30) for _ in range(4)]
    errors: list[BaseException] = []
    barrier = threading.Barrier(len(clients))

    def start(client: Any) -> None:
        barrier.wait()
        try:
            _warden.ensure(client.api)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=start, args=(c,)) for c in clients]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    for c in clients:
        c.close()
    assert not errors, errors
    (row,) = _wardens(docker_engine)
    assert row["Names"] == ["/sandboxkit-warden"] and row["State"] == "running"
    # a client whose start lost the race to another's must not take that for the engine refusing the
    # powers to mount, and replace the warden with one that cannot (the sandboxes' disk caps need them)
    assert row["Labels"][_warden.MOUNTS_LABEL] == "1", row["Labels"]
    assert docker_engine.api.inspect_container(_warden.NAME)["HostConfig"]["PidMode"] == "host"


def test_it_is_out_of_the_sandboxes_reach(docker_engine: Any) -> None:
    with Sandbox.create(timeout=60):  # a create starts it
        info = docker_engine.api.inspect_container(_warden.NAME)
    host = info["HostConfig"]
    assert host["NetworkMode"] == "none" and info["Config"].get("NetworkDisabled") is True  # no address at all
    assert host["RestartPolicy"]["Name"] == "unless-stopped"
    assert [m["Destination"] for m in info["Mounts"]] == ["/var/run/docker.sock"]
    assert host["CapDrop"] == ["ALL"] and "no-new-privileges" in host["SecurityOpt"]
    # the powers to mount disk-capped layers, and no more (never --privileged)
    assert not host["Privileged"] and host["PidMode"] == "host"
    assert sorted(host["CapAdd"]) == sorted(_warden.MOUNT_POWERS["cap_add"])
    assert info["Config"]["Labels"][_warden.MOUNTS_LABEL] == "1"
    assert not host["PortBindings"] and not info["Config"].get("ExposedPorts")
    assert "sandboxkit.managed" not in info["Config"]["Labels"]  # never listed, reaped or counted as a sandbox


def test_a_create_restarts_a_removed_warden_and_the_cli_shows_it(docker_engine: Any) -> None:
    assert _cli("stop").returncode == 0
    down = _cli("status")
    assert down.returncode == 3 and "absent" in down.stdout, down
    with Sandbox.create(timeout=60) as sb:
        assert sb.execute("echo up").stdout == "up\n"
        up = _cli("status")
        assert up.returncode == 0 and "sandboxkit-warden: running" in up.stdout, up
        assert "mounts disk caps" in up.stdout, up
    assert _cli("stop").returncode == 0
    assert _cli("start").returncode == 0
    (row,) = _wardens(docker_engine)
    assert row["State"] == "running"


def test_off_means_no_warden_and_a_missing_image_says_what_to_do(
    docker_engine: Any, monkeypatch: pytest.MonkeyPatch, session_label: str
) -> None:
    def ours() -> set[str]:
        return {c["Id"] for c in docker_engine.api.containers(all=True, filters={"label": session_label})}

    _warden.stop(docker_engine.api)
    try:
        monkeypatch.setenv(_warden.ENV_SWITCH, "off")
        with Sandbox.create(timeout=60) as sb:
            assert sb.execute("echo up").stdout == "up\n"
        assert _wardens(docker_engine) == []
        monkeypatch.setenv(_warden.ENV_SWITCH, "on")
        monkeypatch.setenv(_warden.ENV_IMAGE, "sandboxkit/no-such-warden-image:never")
        before = ours()
        with pytest.raises(Exception) as err:
            Sandbox.create(timeout=60)
        assert getattr(err.value, "code", None) == "SANDBOX_CREATION_FAILED"
        assert "sandboxkit images bootstrap" in str(err.value) and _warden.ENV_SWITCH in str(err.value)
        assert ours() <= before and _wardens(docker_engine) == []  # the sandbox was removed
    finally:
        monkeypatch.delenv(_warden.ENV_IMAGE, raising=False)
        monkeypatch.setenv(_warden.ENV_SWITCH, "on")
        _warden.ensure(docker_engine.api)


def _report(docker_engine: Any, sandbox_id: str) -> float | None:
    """The activity report the warden holds for a sandbox (seconds from its write to idle), if any."""
    try:
        stream, _ = docker_engine.api.get_archive(_warden.NAME, f"/{_warden.ACTIVITY_DIR}/{sandbox_id}")
    except docker.errors.NotFound:
        return None
    with tarfile.open(fileobj=io.BytesIO(b"".join(stream))) as tar:
        member = tar.extractfile(tar.getmembers()[0])
        assert member is not None
        return float(member.read())


def test_clients_report_commands_into_the_warden_not_the_sandbox(docker_engine: Any) -> None:
    idle = 8.0  # reports at most every 2 s
    with Sandbox.create(timeout=120, idle_timeout=idle) as sb:
        assert sb.handle.labels["sandboxkit.idle_reports"] == "1"  # type: ignore[attr-defined]
        activity = sb.handle.provider.activity()  # type: ignore[attr-defined]
        done = threading.Event()

        def busy() -> None:
            sb.execute("sleep 3")
            done.set()

        worker = threading.Thread(target=busy)
        worker.start()
        busy_offset = 2 * _warden.report_interval(idle) + 1.0
        deadline = time.monotonic() + 10
        while _report(docker_engine, sb.id) != pytest.approx(busy_offset) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert _report(docker_engine, sb.id) == pytest.approx(busy_offset), "no busy report while a command ran"
        worker.join(30)
        assert done.is_set()
        activity.flush()
        after = _report(docker_engine, sb.id)
        assert after is not None and -3.0 < after <= 0, after  # idle since the command ended, moments ago
        assert "sandboxkit-activity" not in sb.execute("ls /").stdout  # nothing of it inside the sandbox
