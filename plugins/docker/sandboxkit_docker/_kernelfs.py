"""Paths under /proc and /sys: kernel filesystems the archive API cannot see.

Docker's archive API works on the container's root filesystem, under the procfs and sysfs that
runc mounts over it: a write "succeeds" into a hidden file, a read finds nothing or a stale file.
So writes there fail with FILE_OPERATION_FAILED on every path, and reads go to the live file
inside the sandbox (through the agent, or ``cat`` through one docker exec), so both paths agree.
"""

from __future__ import annotations

from typing import Any

ROOTS = ("/proc", "/sys")


def is_kernel_path(path: str) -> bool:
    """True for ``/proc``, ``/sys`` and anything under them (``path`` is absolute and normalised)."""
    return any(path == root or path.startswith(root + "/") for root in ROOTS)


def read_live(api: Any, container_id: str, path: str) -> tuple[int, bytes, bytes]:
    """``cat`` the file as root inside the sandbox: (exit code, stdout, stderr)."""
    created = api.exec_create(container_id, ["cat", "--", path], user="0")
    out, err = api.exec_start(created["Id"], demux=True)
    code = api.exec_inspect(created["Id"]).get("ExitCode")
    return (code if isinstance(code, int) else 1), out or b"", err or b""
