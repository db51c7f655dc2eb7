"""Disk caps, carried out as root in real sandboxes. Every sandbox gets 10 GiB by default and
``disk_mib`` is enforced: ``dd`` stops at about the cap with ENOSPC and the host's disk grows by no
more. Driver quotas where the engine has them (overlay2 on xfs+pquota, zfs); on overlay2 elsewhere
(ext4, this machine and CI) the warden mounts a capped filesystem under the writable layer, which
removing the sandbox takes away again. Without the warden an explicit ``disk_mib`` is refused
with CAPABILITY_NOT_SUPPORTED before any container exists."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from typing import Any

import pytest
from sandboxkit_docker import _warden
from sandboxkit_docker._diskcap import CONTAINER_DIR_MIB
from sandboxkit_docker._limits import disk_quota_problem

from sandboxkit import ErrorCode, Sandbox, SandboxError
from sandboxkit.spi import DEFAULT_DISK_MIB

pytestmark = pytest.mark.usefixtures("docker_engine")

CAP_MIB = 200
#: room for filesystem metadata and what the engine writes beside a layer, MiB
MARGIN_MIB = 64
#: writes zeros until the disk says no, bounded in time; then flushes, so the host sees it all
FILL = "timeout 60 dd if=/dev/zero of=/big bs=1M 2>&1; echo rc=$?; sync; du -m /big | cut -f1"


def _dirs(docker_engine: Any, sandbox_id: str) -> tuple[str, str]:
    """The sandbox's overlay2 layer directory and its container directory on the host."""
    info = docker_engine.api.inspect_container(sandbox_id)
    upper: str = info["GraphDriver"]["Data"]["UpperDir"]
    return upper.removesuffix("/diff"), f"{docker_engine.info()['DockerRootDir']}/containers/{info['Id']}"


def _mount_at(path: str) -> tuple[str, str] | None:
    """(filesystem type, source) of the mount at ``path`` in this (the engine's) mount namespace."""
    found = None
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fields = line.split()
        if fields[4] == path:
            tail = fields[fields.index("-") + 1 :]
            found = (tail[0], tail[1])
    return found


def _loops_under(path: str) -> list[str]:
    """Loop devices whose backing file lies under ``path``."""
    return [
        dev.name
        for dev in Path("/sys/block").glob("loop*")
        if (dev / "loop/backing_file").exists() and (dev / "loop/backing_file").read_text().startswith(path)
    ]


def _gone(path: str) -> bool:
    return _mount_at(path) is None and not _loops_under(path) and not os.path.exists(path)


def _wait_gone(*paths: str, within: float = 20.0) -> None:
    deadline = time.monotonic() + within
    while not all(_gone(p) for p in paths) and time.monotonic() < deadline:
        time.sleep(0.2)
    for path in paths:
        assert _mount_at(path) is None, f"{path} is still mounted"
        assert not _loops_under(path), f"loop devices left behind: {_loops_under(path)}"
        assert not os.path.exists(path), f"{path} is still there"


def _free_mib(docker_engine: Any) -> int:
    os.sync()
    return shutil.disk_usage(docker_engine.info()["DockerRootDir"]).free >> 20


def test_dd_as_root_stops_at_the_cap_and_the_host_disk_grows_by_no_more(docker_engine: Any) -> None:
    free_before = _free_mib(docker_engine)
    with Sandbox.create(provider_options={"disk_mib": CAP_MIB}, timeout=120) as sb:
        assert sb.execute("id -u").stdout == "0\n"
        result = sb.execute(FILL, timeout=90)
        written = int(result.stdout.strip().splitlines()[-1])
        assert "No space left" in result.output and "rc=1" in result.output, result.output  # ENOSPC, not the timeout
        assert CAP_MIB * 0.8 <= written <= CAP_MIB, f"wrote {written} MiB under a {CAP_MIB} MiB cap"
        grown = free_before - _free_mib(docker_engine)
        assert grown <= CAP_MIB + MARGIN_MIB, f"the host disk grew by {grown} MiB under a {CAP_MIB} MiB cap"
        again = sb.execute("rm /big && echo small > /f && cat /f")  # freeing space makes the sandbox usable again
        assert again.stdout == "small\n", again.output
        # /etc/hosts, /etc/hostname, /etc/resolv.conf are host files the engine bind-mounts writable;
        # capped where the warden mounts caps (driver quotas leave them out: plugins/docker/README.md)
        mounted = disk_quota_problem(docker_engine.info()) is not None
        for path in ("/etc/hosts", "/etc/resolv.conf") if mounted else ():
            spill = sb.execute(f"timeout 60 dd if=/dev/zero of={path} bs=1M 2>&1; echo rc=$?; du -m {path} | cut -f1")
            assert "rc=1" in spill.output, spill.output
            assert int(spill.stdout.strip().splitlines()[-1]) <= CONTAINER_DIR_MIB, spill.output
        grown = free_before - _free_mib(docker_engine)
        assert grown <= CAP_MIB + MARGIN_MIB, f"the host disk grew by {grown} MiB under a {CAP_MIB} MiB cap"
        dirs = _dirs(docker_engine, sb.id)
    _wait_gone(*dirs)
    assert free_before - _free_mib(docker_engine) <= MARGIN_MIB, "closing the sandbox did not free its disk"


def test_every_sandbox_gets_the_default_cap(docker_engine: Any) -> None:
    with Sandbox.create(timeout=60) as sb:
        assert sb.execute("echo $SANDBOXKIT_DISK_MIB").stdout.strip() == str(DEFAULT_DISK_MIB)
        size_mib = int(sb.execute("df -m / | awk 'NR==2 {print $2}'").stdout)
        assert DEFAULT_DISK_MIB * 0.9 <= size_mib <= DEFAULT_DISK_MIB, f"/ is {size_mib} MiB"
        if disk_quota_problem(docker_engine.info()) is not None:  # the warden's mount, not a driver quota
            for path in _dirs(docker_engine, sb.id):
                fstype, source = _mount_at(path) or ("", "")
                assert fstype == "ext4" and source.startswith("/dev/loop"), (path, fstype, source)


def test_rm_f_of_a_capped_sandbox_frees_its_layer(docker_engine: Any) -> None:
    sb = Sandbox.create(provider_options={"disk_mib": CAP_MIB}, timeout=60)
    try:
        sb.execute("head -c 50M /dev/zero > /data")
        dirs = _dirs(docker_engine, sb.id)
        docker_engine.api.remove_container(sb.id, force=True)  # what gc and `docker rm -f` do
        _wait_gone(*dirs)
    finally:
        sb.close()


def test_a_snapshot_of_a_capped_sandbox_keeps_its_files(docker_engine: Any) -> None:
    with Sandbox.create(provider_options={"disk_mib": CAP_MIB}, timeout=60) as sb:
        sb.execute("mkdir -p /work && echo kept > /work/file", check=True)
        snap = sb.snapshot(ttl=120)
    try:
        with Sandbox.create(snapshot=snap, provider_options={"disk_mib": CAP_MIB}, timeout=60) as sb2:
            assert sb2.execute("cat /work/file").stdout == "kept\n"
            assert "No space left" in sb2.execute(FILL, timeout=90).output
    finally:
        snap.delete()


def test_the_cap_holds_under_gvisor_on_the_layer_and_on_tmp(runsc_engine: Any) -> None:
    with Sandbox.create(provider_options={"disk_mib": CAP_MIB, "runtime": "runsc"}, timeout=120) as sb:
        result = sb.execute(FILL, timeout=90)
        assert "rc=1" in result.output and int(result.stdout.strip().splitlines()[-1]) <= CAP_MIB, result.output
        # /tmp is a volume under runsc (see _security.runsc_tmp): a tmpfs of the cap, not the host's disk
        result = sb.execute(FILL.replace("/big", "/tmp/big"), timeout=90)
        assert "rc=1" in result.output and int(result.stdout.strip().splitlines()[-1]) <= CAP_MIB, result.output


def test_writing_to_pid_1s_stdout_does_not_grow_the_hosts_log_past_1_mib(docker_engine: Any) -> None:
    with Sandbox.create(timeout=60) as sb:  # PID 1's stdout is the container's log, on the host's disk
        flood = sb.execute(r"head -c 50000000 /dev/zero | tr '\0' x > /proc/1/fd/1; echo rc=$?", timeout=60)
        assert "rc=0" in flood.stdout, flood.output
        log_path = docker_engine.api.inspect_container(sb.id)["LogPath"]
        assert os.path.getsize(log_path) <= 2 << 20, f"the container log grew to {os.path.getsize(log_path)} bytes"


def test_without_the_warden_an_explicit_cap_is_refused_before_any_container(
    docker_engine: Any, session_label: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    problem = disk_quota_problem(docker_engine.info())
    monkeypatch.setenv(_warden.ENV_SWITCH, "off")
    if problem is None:  # driver quotas need no warden
        with Sandbox.create(provider_options={"disk_mib": CAP_MIB}, timeout=60) as sb:
            host_config = docker_engine.api.inspect_container(sb.id)["HostConfig"]
            assert host_config["StorageOpt"] == {"size": f"{CAP_MIB}M"}
        return

    def ours() -> set[str]:
        return {c.id for c in docker_engine.containers.list(all=True, filters={"label": session_label})}

    before = ours()
    with pytest.raises(SandboxError) as err:
        Sandbox.create(provider_options={"disk_mib": CAP_MIB})
    assert err.value.code == ErrorCode.CAPABILITY_NOT_SUPPORTED
    assert problem in err.value.message and "warden" in err.value.message and "max_file_mib" in err.value.message
    assert ours() == before, "a refused disk cap left a container behind"
    with Sandbox.create(timeout=60) as sb:  # and no default cap is claimed where none holds
        assert sb.execute("echo ${SANDBOXKIT_DISK_MIB:-unset}").stdout.strip() == "unset"
