"""Tree kill for Modal commands: Modal's exec API has no kill, and its client-side timeout kills nothing.

Every exec carries a unique marker in its environment, inherited by all its descendants (``setsid``
ones too); a second exec kills every process whose environment holds it. The script uses shell
builtins only (it must start when a fork bomb holds the pid slots): passes of SIGSTOP freeze the
tree so nothing forks any more, then SIGKILL, until a pass finds nothing (at most 20 passes).
"""

from __future__ import annotations

#: Environment variable carrying a command's marker (not the Docker provider's: the emulator runs on it).
MARKER = "SANDBOXKIT_MODAL_EXEC"

_KILL = (
    "t='" + MARKER + '={token}\'; found=1; n=0; while [ -n "$found" ] && [ $n -lt 20 ]; do found=; n=$((n+1)); '
    'for sig in STOP KILL; do for p in /proc/[0-9]*; do [ "${{p#/proc/}}" = $$ ] && continue; '
    'while IFS= read -r l || [ -n "$l" ]; do case $l in *"$t"*) '
    "kill -$sig ${{p#/proc/}} 2>/dev/null && found=1; break;; esac; l=; done 2>/dev/null < $p/environ; "
    "done; done; done; true"
)


def kill_script(token: str) -> list[str]:
    """argv that kills every process whose environment carries ``token``."""
    return ["sh", "-c", _KILL.format(token=token)]
