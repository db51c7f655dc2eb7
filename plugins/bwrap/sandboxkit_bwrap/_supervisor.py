"""The supervisor of one sandbox (``supervisor.sh``) and the process helpers clients share with it.

The client starts ``supervisor.sh STATE_DIR CONFIG_FD LOCK_FD PIPE_FD...`` through ``launch.c``,
in a session of its own and a private mount namespace where the launcher has mounted the
copy-on-write root (an overlay) on the shared mount point ``STATE/mnt``, so that mount exists
only there and vanishes with it; the script forks itself away from the client at once. Its
config (shell variables) comes on a pipe, and so do its channels to bwrap (:data:`PIPES`): the
state directory holds only the record, ``ready.json``, ``supervisor.log`` (every helper's
stderr), the writable layer and the agent's socket, so a create makes few inodes. It starts
bwrap (unprivileged, as the sandbox root's host uid), maps the ids of the user namespace bwrap
made while bwrap waits for it, writes ``ready.json`` and prints one JSON line on stdout (``{"ok": ...}`` or
``{"error": ...}``). The command agent (``_agent``) and the user-mode network start when the
first command asks for them (SIGUSR1); the sandbox's PID 1 and first process join the
sandbox's cgroups once create has returned (commands join their own; each gets a cgroup
namespace of its own from the agent); it releases the flock on the state directory (LOCK_FD)
once both are up, and commands wait for that. It enforces the lifetime: it ends the sandbox at
its deadline, after ``idle_timeout`` seconds without a running command (a command's main
process is a child of the agent), on SIGTERM (``terminate``) or when bwrap ends. Ending means:
``ended`` written, SIGKILL to the sandbox's PID 1 (which takes its whole pid namespace) and to
the agent, every process left in the sandbox's cgroups killed, the cgroups and the writable
layer removed, and the state directory (the registry entry) removed last. If the supervisor
itself is killed, bwrap and the agent die with it (``--die-with-parent``, ``PR_SET_PDEATHSIG``)
and ``gc`` removes what is left.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

#: The supervisor script (bash: it starts in a millisecond and waits with builtins).
SCRIPT = Path(__file__).with_name("supervisor.sh")
#: The pipes the client makes for the supervisor (each passed as its read and write end, in order):
#: a pipe only it holds (naps), PID 1's stdin, bwrap's info and userns-block fds, PID 1's stdout,
#: the agent's and the network's ready fds.
PIPES = ("tick", "hold", "info", "block", "out", "agent", "net")


def starttime(pid: int) -> str | None:
    """Field 22 of /proc/PID/stat (start time in ticks): tells a pid from a reused one.

    None when the process is gone or a zombie (dead, not yet reaped).
    """
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return None if len(fields) < 20 or fields[0] in ("Z", "X") else fields[19]


def cgroup_pids(directory: str) -> list[int]:
    """Every pid in ``directory`` and the cgroups below it."""
    pids: list[int] = []
    for root, _dirs, files in os.walk(directory):
        if "cgroup.procs" in files:
            try:
                with open(os.path.join(root, "cgroup.procs")) as f:
                    pids += [int(p) for p in f.read().split()]
            except OSError:
                pass
    return pids


def kill_cgroups(directories: list[str]) -> None:
    """SIGKILL every process in these cgroup trees until none is left (bounded)."""
    for _ in range(200):
        for d in directories:  # cgroup v2 (5.14+): the kernel kills the whole tree at once
            try:
                with open(os.path.join(d, "cgroup.kill"), "w") as f:
                    f.write("1")
            except OSError:
                pass
        pids = [p for d in directories for p in cgroup_pids(d)]
        if not pids:
            return
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass  # gone; or a rootless client's sandbox process (its subordinate ids): cgroup.kill above
        time.sleep(0.01)


def remove_cgroups(directories: list[str]) -> None:
    """rmdir each cgroup tree, deepest first (the kernel frees them once empty)."""
    for top in directories:
        for root, _dirs, _files in sorted(os.walk(top, topdown=False), key=lambda w: -len(w[0])):
            for _ in range(50):
                try:
                    os.rmdir(root)
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.02)
