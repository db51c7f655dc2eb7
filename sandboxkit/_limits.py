"""Default resource caps, the same on every provider that runs sandboxes on a host it shares.

A sandbox whose spec asks for no limit still gets one: a CFS quota of half the host's CPUs (at
least one), memory at half the host's RAM (at least 512 MiB, at most 8 GiB) and, where the
provider can enforce one, 10 GiB of disk. ``cpu=``, ``memory_mib=`` and the provider's disk option
replace them.
"""

from __future__ import annotations

#: Ceiling of the default memory cap, MiB.
DEFAULT_MEMORY_MAX_MIB = 8192
#: The disk cap of a sandbox that asked for none, MiB, where the provider can enforce one.
DEFAULT_DISK_MIB = 10240


def default_cpu(ncpu: int) -> float:
    """The CPU quota of a sandbox that asked for none: half the host's CPUs, at least one."""
    return max(1.0, ncpu / 2)


def default_memory_mib(mem_total: int) -> int | None:
    """The memory cap of a sandbox that asked for none: half the host's RAM (bytes), at most 8 GiB."""
    return min(DEFAULT_MEMORY_MAX_MIB, max(512, (mem_total >> 20) // 2)) if mem_total > 0 else None
