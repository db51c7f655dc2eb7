"""Resource limits as Docker HostConfig settings, and the same limits exported to the sandbox.

cpu -> CFS quota (``nano_cpus``) plus a cpuset of ceil(cpu) CPUs so ``nproc`` reports the limit;
memory -> hard limit with no swap (``mem_limit == memswap_limit``); pids -> ``pids_limit``;
disk -> ``storage_opt size`` where the storage driver has quotas (overlay2 on xfs with pquota,
zfs; Docker rejects it on overlay2 over ext4, where ``_diskcap`` mounts the cap instead);
max_file_mib -> ``ulimit -f``.

Every sandbox is capped even when the spec says nothing: a CFS quota of half the host's CPUs (at
least one; ``cpu=`` replaces it), memory at half the host's RAM up to 8 GiB (``memory_mib=``
replaces it), 4096 pids (``pids_limit``) and 10 GiB of disk (where quotas or ``_diskcap`` hold one):
the defaults of ``sandboxkit.spi`` (``default_cpu``, ``default_memory_mib``, ``DEFAULT_DISK_MIB``).
"""

from __future__ import annotations

import math
import random
from collections import Counter
from collections.abc import Iterable
from typing import Any

import docker.types

from sandboxkit.spi import SandboxSpec


def choose_cpuset(cpu: float, ncpu: int, in_use: Iterable[str]) -> str | None:
    """The ceil(cpu) CPUs least used by other pinned sandboxes, or None when that is every CPU."""
    want = math.ceil(cpu)
    if ncpu <= 1 or want >= ncpu:
        return None
    load: Counter[int] = Counter({i: 0 for i in range(ncpu)})
    for cpuset in in_use:
        for part in cpuset.split(","):
            if part.isdigit() and int(part) < ncpu:
                load[int(part)] += 1
    order = sorted(range(ncpu), key=lambda i: (load[i], random.random()))
    return ",".join(str(i) for i in sorted(order[:want]))


#: What PID 1 prints (nothing, unless root in the sandbox writes to ``/proc/1/fd/1``) is kept in at
#: most 1 MiB on the host: the engine's default json-file log grows without bound, past any disk cap.
LOG_CONFIG = {"Type": "json-file", "Config": {"max-size": "1m", "max-file": "1"}}


def host_config(
    spec: SandboxSpec,
    *,
    pids_limit: int,
    cpuset: str | None,
    fallback_cpu: float | None,
    disk_mib: int | None,
    max_file_mib: int | None,
) -> dict[str, Any]:
    """docker-py ``containers.create`` kwargs for every limit of ``spec`` (``fallback_cpu`` when it has no cpu)."""
    kwargs: dict[str, Any] = {"pids_limit": pids_limit, "log_config": LOG_CONFIG}
    cpu = spec.cpu if spec.cpu is not None else fallback_cpu
    if cpu is not None:
        kwargs["nano_cpus"] = int(cpu * 1e9)
    if cpuset is not None:
        kwargs["cpuset_cpus"] = cpuset
    if spec.memory_mib is not None:
        kwargs["mem_limit"] = kwargs["memswap_limit"] = f"{spec.memory_mib}m"
    if disk_mib is not None:
        kwargs["storage_opt"] = {"size": f"{disk_mib}M"}
    if max_file_mib is not None:
        size = max_file_mib << 20
        kwargs["ulimits"] = [docker.types.Ulimit(name="fsize", soft=size, hard=size)]
    return kwargs


def disk_quota_problem(info: dict[str, Any]) -> str | None:
    """Why this engine cannot cap a sandbox's disk, or None when its storage driver can."""
    driver = str(info.get("Driver") or "unknown")
    backing = dict(info.get("DriverStatus") or []).get("Backing Filesystem", "")
    if driver == "zfs" or (driver in ("overlay2", "vfs") and backing == "xfs"):
        return None  # xfs also needs pquota: without it Docker refuses storage_opt, and create says so
    if driver == "btrfs":
        return "its btrfs qgroup quotas let one sandbox in three write past the cap in our tests"
    return f"its storage driver {driver} on {backing or 'an unknown filesystem'} has no per-container quota"


def limit_env(spec: SandboxSpec, *, pids_limit: int, disk_mib: int | None, max_file_mib: int | None) -> dict[str, str]:
    """The limits as ``SANDBOXKIT_*`` variables (``nproc`` and ``free`` may not show them)."""
    env = {"SANDBOXKIT_TIMEOUT": f"{spec.timeout:g}", "SANDBOXKIT_PIDS_LIMIT": str(pids_limit)}
    if spec.cpu is not None:
        env["SANDBOXKIT_CPU"] = f"{spec.cpu:g}"
    if spec.memory_mib is not None:
        env["SANDBOXKIT_MEMORY_MIB"] = str(spec.memory_mib)
    if spec.idle_timeout is not None:
        env["SANDBOXKIT_IDLE_TIMEOUT"] = f"{spec.idle_timeout:g}"
    if disk_mib is not None:
        env["SANDBOXKIT_DISK_MIB"] = str(disk_mib)
    if max_file_mib is not None:
        env["SANDBOXKIT_MAX_FILE_MIB"] = str(max_file_mib)
    return env
