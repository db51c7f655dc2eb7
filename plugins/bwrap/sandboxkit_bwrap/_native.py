"""The provider's small C programs, compiled once per machine with the host's C compiler.

``agent.c`` (the command agent of each sandbox, see ``_agent``), ``launch.c`` (which starts a
supervisor in a mount namespace of its own holding the sandbox's root, see ``_supervisor``) and
``seccomp.c`` (which compiles the sandboxes' seccomp filter with libseccomp, see ``_seccomp``) are
compiled on first use into ``STATE/bin/`` (named by the source's hash, so an upgrade rebuilds).
"""

from __future__ import annotations

import functools
import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from sandboxkit.spi import ErrorCode, SandboxError
from sandboxkit_bwrap._host import PROVIDER
from sandboxkit_bwrap._registry import state_root

#: What each program links besides libc, and the Debian package with its headers.
LIBRARIES = {"seccomp": (["-lseccomp"], "libseccomp-dev")}


@functools.cache
def binary(name: str) -> str:
    """The compiled program ``name`` (agent, launch, seccomp), built from ``name.c`` once per source version."""
    source = Path(__file__).with_name(f"{name}.c")
    target = state_root() / "bin" / f"{name}-{hashlib.sha256(source.read_bytes()).hexdigest()[:16]}"
    if target.exists():
        return str(target)
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        raise SandboxError(
            ErrorCode.PROVIDER_UNAVAILABLE,
            "the bwrap provider builds three small C programs (its command agent, launcher and seccomp "
            "filter compiler) once and needs a C compiler for that; install one "
            "(`apt-get install gcc libc6-dev libseccomp-dev`)",
            provider=PROVIDER,
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        out = Path(tmp) / name
        libs, package = LIBRARIES.get(name, ([], "libc6-dev"))
        built = subprocess.run([compiler, "-O2", "-o", str(out), str(source), *libs], capture_output=True, text=True)
        if built.returncode != 0:
            raise SandboxError(
                ErrorCode.PROVIDER_UNAVAILABLE,
                f"building the bwrap provider's {name} with {compiler} failed (is Debian's {package} "
                f"installed?): {built.stderr.strip()[-300:]}",
                provider=PROVIDER,
            )
        out.chmod(0o700)
        os.replace(out, target)
    return str(target)
