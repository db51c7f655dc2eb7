"""What this host offers the bwrap provider; a clear PROVIDER_UNAVAILABLE when something is missing."""

from __future__ import annotations

import functools
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from sandboxkit.spi import ErrorCode, SandboxError
from sandboxkit_bwrap import _cgroups

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
    reason = _cgroups.unavailable_reason()
    if reason:
        return reason
    tools = {tool: str(shutil.which(tool)) for tool in _TOOLS}
    return Host(tools, shutil.which("slirp4netns"))


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
