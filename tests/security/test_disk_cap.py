"""Disk caps. Where the engine's storage driver enforces per-container quotas (overlay2 on xfs with
pquota, zfs), every sandbox gets 10 GiB by default and ``disk_mib`` is enforced: ``dd`` as root
stops at about the cap with ENOSPC and the host's disk grows by no more. Elsewhere (overlay2 on
ext4, btrfs, whose qgroups we saw leak) an explicit ``disk_mib`` is refused with
CAPABILITY_NOT_SUPPORTED naming the fix, before any container exists, and no default is set."""

from __future__ import annotations

import shutil
from typing import Any

import pytest
from sandboxkit_docker._limits import disk_quota_problem

from sandboxkit import ErrorCode, Sandbox, SandboxError

pytestmark = pytest.mark.usefixtures("docker_engine")

CAP_MIB = 200
#: writes zeros until the disk says no, bounded in time
FILL = "timeout 60 dd if=/dev/zero of=/big bs=1M 2>&1; echo rc=$?; du -m /big | cut -f1"


def _ours(docker_engine: Any, session_label: str) -> set[str]:
    return {c.id for c in docker_engine.containers.list(all=True, filters={"label": session_label})}


def test_disk_mib_is_enforced_or_refused_clearly(docker_engine: Any, session_label: str) -> None:
    problem = disk_quota_problem(docker_engine.info())
    before = _ours(docker_engine, session_label)
    if problem is not None:
        with pytest.raises(SandboxError) as err:
            Sandbox.create(provider_options={"disk_mib": CAP_MIB})
        assert err.value.code == ErrorCode.CAPABILITY_NOT_SUPPORTED
        assert problem in err.value.message and "pquota" in err.value.message and "max_file_mib" in err.value.message
        assert _ours(docker_engine, session_label) == before, "a refused disk cap left a container behind"
        with Sandbox.create() as sb:  # no default cap is set where none can hold
            host_config = sb.instance.client.api.inspect_container(sb.id)["HostConfig"]
            assert not (host_config.get("StorageOpt") or {})
            assert sb.execute("echo ${SANDBOXKIT_DISK_MIB:-unset}").stdout.strip() == "unset"
        return
    free_before = shutil.disk_usage(docker_engine.info()["DockerRootDir"]).free
    with Sandbox.create(provider_options={"disk_mib": CAP_MIB}, timeout=120) as sb:
        result = sb.execute(FILL, timeout=90)
        written = int(result.stdout.strip().splitlines()[-1])
        assert "No space left" in result.output or "quota" in result.output.lower(), result.output
        assert written <= CAP_MIB + 16, f"wrote {written} MiB past a {CAP_MIB} MiB cap"
        grown = (free_before - shutil.disk_usage(docker_engine.info()["DockerRootDir"]).free) >> 20
        assert grown <= CAP_MIB + 64, f"the host disk grew by {grown} MiB"
    with Sandbox.create() as sb:
        assert sb.instance.client.api.inspect_container(sb.id)["HostConfig"]["StorageOpt"] == {"size": "10240M"}
