"""What this host offers the bwrap provider; a clear PROVIDER_UNAVAILABLE when something is missing."""

from __future__ import annotations

import functools
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from sandboxkit.spi import ErrorCode, SandboxError
from sandboxkit_bwrap import _cgroups, _userns

PROVIDER = "bwrap"
_TOOLS = {
    "bwrap": "bubblewrap",
    "bash": "bash",
}


@dataclass(frozen=True)
class Host:
    """Absolute paths of the host tools the provider runs."""

    tools: dict[str, str]
    #: the user-mode network stack, or None when slirp4netns is not installed
    slirp4netns: str | None
    #: a non-root client's ids and subordinate ranges (rootless mode, see ``_userns``); None as root
    userns: _userns.Ids | None = None


@functools.cache
def probe() -> Host | str:
    """The host's tools, or why the provider cannot run here."""
    missing = [f"{tool} (Debian package {pkg})" for tool, pkg in _TOOLS.items() if shutil.which(tool) is None]
    if missing:
        return f"missing {', '.join(missing)}; install them (`apt-get install bubblewrap`)"
    if not Path("/proc/self/ns/user").exists() or _int("/proc/sys/user/max_user_namespaces") == 0:
        return "this kernel has no user namespaces (user.max_user_namespaces is 0)"
    if "overlay" not in Path("/proc/filesystems").read_text():
        return "this kernel has no overlayfs (`modprobe overlay`)"
    ids = None
    if not is_root() and not _cgroups.is_v2():  # refused first: nothing else would help
        return str(_cgroups.unavailable_reason())
    if not is_root():
        found = _rootless()
        if isinstance(found, str):
            return found
        ids = found
    reason = _cgroups.unavailable_reason()
    if reason:
        return reason
    tools = {tool: str(shutil.which(tool)) for tool in _TOOLS}
    return Host(tools, shutil.which("slirp4netns"), ids)


def _rootless() -> _userns.Ids | str:
    """What a non-root client needs besides cgroups: its subordinate ids, and a kernel that lets it mount."""
    if _int("/proc/sys/kernel/unprivileged_userns_clone") == 0:
        return "unprivileged user namespaces are turned off (sysctl kernel.unprivileged_userns_clone=1 turns them on)"
    if _int("/proc/sys/kernel/apparmor_restrict_unprivileged_userns") == 1:
        return (
            "AppArmor restricts unprivileged user namespaces (kernel.apparmor_restrict_unprivileged_userns=1); "
            "give bwrap and this client an AppArmor profile that allows userns, or run as root"
        )
    release = re.match(r"(\d+)\.(\d+)", os.uname().release)
    if release and (int(release.group(1)), int(release.group(2))) < (5, 11):
        return (
            "a non-root client mounts the sandbox's overlay in a user namespace, which needs Linux 5.11+ "
            f"(this is {os.uname().release})"
        )
    return _userns.probe()


def require() -> Host:
    host = probe()
    if isinstance(host, str):
        raise SandboxError(
            ErrorCode.PROVIDER_UNAVAILABLE,
            f"the bwrap provider cannot run on this host: {host}",
            provider=PROVIDER,
        )
    return host


def _int(path: str) -> int | None:
    try:
        return int(Path(path).read_text())
    except (OSError, ValueError):
        return None


def is_root() -> bool:
    return os.geteuid() == 0
