"""The command agent of a sandbox (``agent.c``): built once, started by the supervisor, asked per command.

One small C process per sandbox, started by the supervisor once the sandbox runs. It stays in
the host's namespaces (nothing in the sandbox can see, signal or ptrace it) except that its
children are born in the sandbox's pid namespace; it listens on ``STATE_DIR/agent.sock`` (mode
0600, in a host directory the sandbox does not mount), so any client of the host user reaches it
again after a reconnect, and nothing inside the sandbox can. Per command, a client connects and
sends one request with the command's stdin, stdout and stderr as file descriptors; the agent
forks once, and the child joins the command's cgroups, enters the sandbox's namespaces and root,
keeps only the capabilities of core's ``DEFAULT_CAPS`` (bounding, permitted and effective sets;
none inheritable or ambient; ``no_new_privs``: what root holds in a Docker sandbox), switches ids
(another user holds none) and directory and execs the command (or, for ``read_file``/``write_file``, copies
the file itself: no exec at all). Output flows from the command straight into the
client's pipes; the agent only writes the wait status back when the command exits. A command
therefore costs one fork and its own exec.

The binary is built from ``agent.c`` on first use (see ``_native``).
"""

from __future__ import annotations

import os
import struct
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Literal

from sandboxkit.spi import DEFAULT_CAPS, ErrorCode, SandboxError, cap_mask
from sandboxkit_bwrap._host import PROVIDER

#: The agent's socket in a sandbox's state directory.
SOCKET = "agent.sock"
#: What a request asks: exec argv ("x"), copy the file argv[0] to stdout ("r") or stdin to it ("w").
Op = Literal["x", "r", "w"]
#: What root keeps in a sandbox (a hex mask, as /proc/PID/status shows it); as in a Docker sandbox.
CAPS = f"{cap_mask(DEFAULT_CAPS):x}"


def request(
    op: Op, argv: Sequence[str], *, env: Mapping[str, str], cwd: str, ids: tuple[int, int], cgroups: Sequence[Path]
) -> bytes:
    """One request: its length, then NUL-terminated op, uid, gid, capabilities, cwd, cgroups, argv and env."""
    fields = [op, str(ids[0]), str(ids[1]), CAPS, cwd, str(len(cgroups)), *map(str, cgroups), str(len(argv)), *argv]
    fields += [str(len(env)), *(f"{k}={v}" for k, v in env.items())]
    if any("\0" in f for f in fields):
        raise SandboxError(
            ErrorCode.INVALID_ARGUMENT, "a command, its env or cwd must not contain NUL bytes", provider=PROVIDER
        )
    payload = b"".join(os.fsencode(f) + b"\0" for f in fields)
    return struct.pack("=I", len(payload)) + payload
