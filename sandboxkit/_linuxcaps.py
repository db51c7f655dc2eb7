"""Linux capabilities by number, and the allow-list root keeps in every local sandbox.

``DEFAULT_CAPS`` is what root needs for the workflows users expect, measured on the default image:
``apt-get install ./x.deb`` and ``dpkg`` (CHOWN, FOWNER; SETUID and SETGID for apt's ``_apt``
sandbox user), ``pip install``, ``useradd`` + ``su``/``execute(user=)`` (SETUID, SETGID),
``chown``, root killing another user's processes (KILL), and root writing where a file's mode says
no (DAC_OVERRIDE). The Docker provider gives a container exactly these (``cap_drop=ALL`` plus
them); the bwrap provider's agent reduces every command's bounding, permitted and effective sets to
them. Everything else (SYS_ADMIN, NET_ADMIN, NET_RAW, SYS_PTRACE, MKNOD, SETFCAP...) is gone.
"""

from __future__ import annotations

from collections.abc import Iterable

#: Capability names without the CAP_ prefix, at their numbers (capabilities(7), linux/capability.h).
LINUX_CAPS = (
    "CHOWN", "DAC_OVERRIDE", "DAC_READ_SEARCH", "FOWNER", "FSETID", "KILL", "SETGID", "SETUID", "SETPCAP",
    "LINUX_IMMUTABLE", "NET_BIND_SERVICE", "NET_BROADCAST", "NET_ADMIN", "NET_RAW", "IPC_LOCK", "IPC_OWNER",
    "SYS_MODULE", "SYS_RAWIO", "SYS_CHROOT", "SYS_PTRACE", "SYS_PACCT", "SYS_ADMIN", "SYS_BOOT", "SYS_NICE",
    "SYS_RESOURCE", "SYS_TIME", "SYS_TTY_CONFIG", "MKNOD", "LEASE", "AUDIT_WRITE", "AUDIT_CONTROL", "SETFCAP",
    "MAC_OVERRIDE", "MAC_ADMIN", "SYSLOG", "WAKE_ALARM", "BLOCK_SUSPEND", "AUDIT_READ", "PERFMON", "BPF",
    "CHECKPOINT_RESTORE",
)  # fmt: skip

#: What root keeps in a sandbox by default (the Docker provider's ``cap_add``/``cap_drop`` change it there).
DEFAULT_CAPS = ("CHOWN", "DAC_OVERRIDE", "FOWNER", "KILL", "SETGID", "SETUID")


def cap_mask(names: Iterable[str]) -> int:
    """The bit mask of ``names`` (as in /proc/PID/status ``CapEff``); ValueError for an unknown name."""
    mask = 0
    for name in names:
        mask |= 1 << LINUX_CAPS.index(name)
    return mask
