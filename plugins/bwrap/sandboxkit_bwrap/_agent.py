"""The command agent of a sandbox (``agent.c``): built once, started by the supervisor, asked per command.

One small C process per sandbox, started by the supervisor once the sandbox runs. It stays in
the host's namespaces (nothing in the sandbox can see, signal or ptrace it) except that its
children are born in the sandbox's pid namespace; it listens on ``STATE_DIR/agent.sock`` (mode
0600, in a host directory the sandbox does not mount), so any client of the host user reaches it
again after a reconnect, and nothing inside the sandbox can. Per command, a client connects and
sends one request with the command's stdin, stdout and stderr as file descriptors; the agent
forks once, and the child joins the command's cgroups, enters the sandbox's namespaces and root,
switches ids and directory and execs the command. Output flows from the command straight into the
client's pipes; the agent only writes the wait status back when the command exits. A command
therefore costs one fork and its own exec.

The binary is compiled from ``agent.c`` on first use into ``STATE/agent/`` (named by the source's
hash), with the host's C compiler.
"""

from __future__ import annotations

import functools
import hashlib
import os
import shutil
import struct
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

from sandboxkit.spi import ErrorCode, SandboxError
from sandboxkit_bwrap._host import PROVIDER
from sandboxkit_bwrap._registry import state_root

SOURCE = Path(__file__).with_name("agent.c")
#: The agent's socket in a sandbox's state directory.
SOCKET = "agent.sock"


@functools.cache
def binary() -> str:
    """The compiled agent, built from ``agent.c`` once per source version."""
    source = SOURCE.read_bytes()
    target = state_root() / "agent" / f"agent-{hashlib.sha256(source).hexdigest()[:16]}"
    if target.exists():
        return str(target)
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        raise SandboxError(
            ErrorCode.PROVIDER_UNAVAILABLE,
            "the bwrap provider builds its command agent (a small C program) once and needs a C "
            "compiler for that; install one (`apt-get install gcc libc6-dev`)",
            provider=PROVIDER,
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        out = Path(tmp) / "agent"
        built = subprocess.run([compiler, "-O2", "-o", str(out), str(SOURCE)], capture_output=True, text=True)
        if built.returncode != 0:
            raise SandboxError(
                ErrorCode.PROVIDER_UNAVAILABLE,
                f"building the bwrap provider's command agent with {compiler} failed: {built.stderr.strip()[-300:]}",
                provider=PROVIDER,
            )
        out.chmod(0o700)
        os.replace(out, target)
    return str(target)


def request(
    argv: Sequence[str], *, env: Mapping[str, str], cwd: str, ids: tuple[int, int], cgroups: Sequence[Path]
) -> bytes:
    """One request: its length, then NUL-terminated uid, gid, cwd, cgroups, argv and env."""
    fields = [str(ids[0]), str(ids[1]), cwd, str(len(cgroups)), *map(str, cgroups), str(len(argv)), *argv]
    fields += [str(len(env)), *(f"{k}={v}" for k, v in env.items())]
    if any("\0" in f for f in fields):
        raise SandboxError(
            ErrorCode.INVALID_ARGUMENT, "a command, its env or cwd must not contain NUL bytes", provider=PROVIDER
        )
    payload = b"".join(os.fsencode(f) + b"\0" for f in fields)
    return struct.pack("=I", len(payload)) + payload
