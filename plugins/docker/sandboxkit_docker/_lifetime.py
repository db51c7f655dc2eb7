"""PID 1 of a sandbox: it alone decides when the container ends, so limits hold when the client dies.

Without ``idle_timeout`` PID 1 (under docker-init) is ``sleep <timeout>``. With it, PID 1 is a
small sh watchdog that also ends the sandbox after ``idle_timeout`` seconds without a running
command. A command is a process that ``docker exec`` started: inside the sandbox's pid namespace
its parent is outside, so its ppid reads 0 (only docker-init, pid 1, shares that). The watchdog
reads /proc with shell builtins only, once a second. The fast exec path's agent is such a
process too, but it is not activity by itself: its commands are. Each command runs below a reaper,
a child of the agent (so activity) while its command runs; a reaper that waits or whose command
ended is named ``sbk-reaper`` and skipped with whatever background work runs below it.
"""

from __future__ import annotations

import math

WATCHDOG = """life=$1 idle=$2
read -r up _ < /proc/uptime; start=${up%.*}; now=$start; last=$start
while [ $((now - start)) -lt "$life" ]; do
  sleep 1
  read -r up _ < /proc/uptime; now=${up%.*}
  agents=" " parents=" "
  for s in /proc/[0-9]*/stat; do
    [ "$s" = /proc/1/stat ] && continue
    read -r l 2>/dev/null < "$s" || continue
    case $l in *"(sbk-exec-agent) "*) agents="$agents${l%% *} "; continue;; *"(sbk-reaper) "*) continue;; esac
    set -- ${l##*) }
    if [ "$2" = 0 ]; then last=$now; break; fi
    parents="$parents$2 "
  done
  for a in $agents; do case $parents in *" $a "*) last=$now; break;; esac; done
  [ $((now - last)) -lt "$idle" ] || exit 0
done
"""


def entrypoint(timeout: float, idle_timeout: float | None) -> tuple[list[str], list[str]]:
    """``(entrypoint, command)`` of a sandbox's PID 1 child."""
    lifetime = str(math.ceil(timeout))
    if idle_timeout is None:
        return ["sleep"], [lifetime]
    return ["sh", "-c", WATCHDOG, "sandboxkit-watchdog"], [lifetime, str(math.ceil(idle_timeout))]
