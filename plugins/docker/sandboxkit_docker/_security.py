"""Hardened container defaults: every capability dropped but a short allow-list (core's
``DEFAULT_CAPS``, which the bwrap provider keeps too), no new privileges, and the OCI runtime
(runc, or gVisor's runsc) the engine must offer.

The allow-list is what root needs for the workflows users expect, measured on the default image:
``apt-get install ./x.deb`` and ``dpkg`` (CHOWN, FOWNER; SETUID and SETGID for apt's ``_apt``
sandbox user), ``pip install``, ``useradd`` + ``su``/``execute(user=)`` (SETUID, SETGID),
``chown``, root killing another user's processes, as the per-command tree kill does (KILL), and
root writing where a file's mode says no (DAC_OVERRIDE: into ``/home/<user>`` or a 0444 file, as
root can anywhere). Gone, among Docker's 14 defaults: NET_RAW (raw sockets, ARP/ICMP spoofing),
MKNOD (device nodes), SETFCAP (file capabilities), SETPCAP, FSETID, SYS_CHROOT, AUDIT_WRITE and
NET_BIND_SERVICE (ports below 1024 still bind: Docker sets ``ip_unprivileged_port_start=0``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import docker.types

from sandboxkit.spi import DEFAULT_CAPS, LINUX_CAPS, ErrorCode, SandboxError
from sandboxkit_docker._errors import PROVIDER

#: Linux capabilities by name (capability(7)), without the CAP_ prefix.
KNOWN_CAPS = frozenset(LINUX_CAPS)

#: The environment variable naming the runtime when ``provider_options`` does not.
RUNTIME_ENV = "SANDBOXKIT_DOCKER_RUNTIME"


def runsc_tmp(disk_mib: int | None) -> docker.types.Mount:
    """/tmp under gVisor, which mounts a tmpfs of its own over an image's empty /tmp that Docker's
    archive API (used by the file methods) cannot see: an anonymous volume is shared by both, and
    removed with the sandbox (``v=True`` on every removal). With a disk cap it is a tmpfs of
    ``disk_mib`` (as gVisor's own), else a volume on the host's disk would take writes past the cap."""
    if disk_mib is None:
        return docker.types.Mount(target="/tmp", source=None, type="volume")
    tmpfs = {"type": "tmpfs", "device": "tmpfs", "o": f"size={disk_mib}m"}
    return docker.types.Mount(
        target="/tmp", source=None, type="volume", driver_config=docker.types.DriverConfig("local", tmpfs)
    )


def normalize_caps(names: Iterable[str]) -> tuple[str, ...]:
    """``["cap_net_raw", "SYS_PTRACE"]`` -> ``("NET_RAW", "SYS_PTRACE")``; ValueError for unknown names."""
    out = []
    for name in names:
        cap = str(name).strip().upper().removeprefix("CAP_")
        if cap not in KNOWN_CAPS:
            raise ValueError(f"{name!r} is not a Linux capability (e.g. 'NET_RAW', 'SYS_PTRACE'; see capabilities(7))")
        out.append(cap)
    return tuple(sorted(set(out)))


def container_kwargs(
    cap_add: Iterable[str], cap_drop: Iterable[str], no_new_privileges: bool, runtime: str | None
) -> dict[str, Any]:
    """docker-py ``containers.create`` kwargs for the hardened defaults, loosened as asked."""
    caps = sorted((set(DEFAULT_CAPS) | set(cap_add)) - set(cap_drop))
    kwargs: dict[str, Any] = {"cap_drop": ["ALL"], "cap_add": caps}
    if no_new_privileges:
        kwargs["security_opt"] = ["no-new-privileges"]
    if runtime:
        kwargs["runtime"] = runtime
    return kwargs


def check_runtime(runtime: str, engine_runtimes: Mapping[str, Any]) -> None:
    """CAPABILITY_NOT_SUPPORTED when the engine does not offer ``runtime``, naming how to add it."""
    if runtime in engine_runtimes:
        return
    hint = (
        "install it (apt-get install runsc), register it with `runsc install -- --platform=ptrace --network=host` "
        "and restart dockerd (scripts/setup.sh prints these lines)"
        if runtime == "runsc"
        else "register it in the engine's daemon.json `runtimes` and restart dockerd"
    )
    raise SandboxError(
        ErrorCode.CAPABILITY_NOT_SUPPORTED,
        f"the Docker engine has no runtime {runtime!r} (it has: {', '.join(sorted(engine_runtimes)) or 'none'}); "
        f"{hint}. Or leave runtime (and ${RUNTIME_ENV}) unset for the engine's default",
        provider=PROVIDER,
    )
