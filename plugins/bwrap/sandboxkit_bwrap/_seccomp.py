"""The seccomp filter of every process in a bwrap sandbox: what Docker's default profile keeps away.

Docker's default profile is an allow-list that leaves out about 44 system calls; this filter
refuses those that matter to a root user in a user namespace of its own, as a deny-list (a new
system call is allowed until it is listed here, as it is on hosts whose Docker predates it):

- **new namespaces** (``clone``/``unshare`` with a ``CLONE_NEW*`` flag; ``clone3``, whose flags a
  filter cannot read, answers ENOSYS so libc falls back to ``clone``) and ``setns``: without
  them, a nested user namespace would hand back every capability the sandbox dropped;
- **mounts** (the old and the new mount API, ``pivot_root``, ``umount``);
- kernel interfaces Docker keeps out: the key rings, ``bpf``, ``perf_event_open``,
  ``userfaultfd``, ``io_uring``, modules and ``kexec``, ``open_by_handle_at`` and
  ``name_to_handle_at``, clocks, swap, quotas, reboot, ``acct``, ``syslog``, port I/O, ``kcmp``,
  ``sethostname``/``setdomainname`` and the obsolete calls.

Refused calls fail with EPERM, as on Docker. ``ptrace`` stays allowed (as on Docker with kernels
4.8 and newer). The filter is compiled once per host (``seccomp.c``, libseccomp) into
``STATE/bin/seccomp-HASH.bpf``: bwrap loads it into the sandbox's PID 1 (``--seccomp``) and the
command agent into every command before it runs, so every process in the sandbox has it.
"""

from __future__ import annotations

import functools
import hashlib
import os
import subprocess
import tempfile
from pathlib import Path

from sandboxkit.spi import ErrorCode, SandboxError
from sandboxkit_bwrap import _native
from sandboxkit_bwrap._host import PROVIDER
from sandboxkit_bwrap._registry import state_root

DENIED = (
    # namespaces and mounts
    "setns",
    "mount",
    "umount",
    "umount2",
    "pivot_root",
    "fsopen",
    "fsconfig",
    "fsmount",
    "fspick",
    "move_mount",
    "open_tree",
    "mount_setattr",
    # kernel interfaces that are not namespaced, or widen the kernel's attack surface
    "add_key",
    "keyctl",
    "request_key",
    "bpf",
    "perf_event_open",
    "userfaultfd",
    "io_uring_setup",
    "io_uring_enter",
    "io_uring_register",
    "kexec_load",
    "kexec_file_load",
    "init_module",
    "finit_module",
    "delete_module",
    "create_module",
    "get_kernel_syms",
    "query_module",
    "open_by_handle_at",
    "name_to_handle_at",
    "lookup_dcookie",
    "kcmp",
    "acct",
    "reboot",
    "swapon",
    "swapoff",
    "quotactl",
    "settimeofday",
    "stime",
    "clock_settime",
    "clock_adjtime",
    "adjtimex",
    "syslog",
    "iopl",
    "ioperm",
    "sethostname",
    "setdomainname",
    "nfsservctl",
    "uselib",
    "vm86",
    "vm86old",
    "_sysctl",
    "sysfs",
    "ustat",
    "vhangup",
)
#: Answer ENOSYS: callers fall back to a call the filter can check (glibc: clone3 -> clone).
ABSENT = ("clone3",)
#: CLONE_NEWNS, CLONE_NEWCGROUP, CLONE_NEWUTS, CLONE_NEWIPC, CLONE_NEWUSER, CLONE_NEWPID,
#: CLONE_NEWNET, and CLONE_NEWTIME (unshare only: clone's low byte is its exit signal).
NAMESPACE_FLAGS = 0x00020000 | 0x02000000 | 0x04000000 | 0x08000000 | 0x10000000 | 0x20000000 | 0x40000000 | 0x80


@functools.cache
def filter_path() -> str:
    """The compiled filter (built once per policy and compiler version)."""
    compiler = _native.binary("seccomp")
    args = [",".join(DENIED), ",".join(ABSENT), hex(NAMESPACE_FLAGS)]
    key = hashlib.sha256("\0".join([compiler, *args]).encode()).hexdigest()[:16]
    target = state_root() / "bin" / f"seccomp-{key}.bpf"
    if target.exists():
        return str(target)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        out = Path(tmp) / "filter.bpf"
        built = subprocess.run([compiler, str(out), *args], capture_output=True, text=True)
        if built.returncode != 0:
            raise SandboxError(
                ErrorCode.PROVIDER_UNAVAILABLE,
                f"compiling the bwrap sandboxes' seccomp filter failed: {built.stderr.strip()[-300:]}",
                provider=PROVIDER,
            )
        os.replace(out, target)
    return str(target)
