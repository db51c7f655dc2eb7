"""The attack on a sandbox's lifetime, as root inside it, shared by the tests/security lifetime tests.

It stops the process that ends the sandbox (PID 1's child: ``sleep <timeout>`` or the idle
watchdog; PID 1 itself ignores signals from inside), kills every other process it can see (the
exec agent included) and stays. Started detached, it waits a moment so the ``execute`` that
launched it returns first.
"""

from __future__ import annotations

import time
from typing import Any

import docker.errors

ATTACK = """sleep 1
timer=$(ps -o pid= --ppid 1 | sort -n | head -n1 | tr -d ' ')
kill -STOP $timer
for p in $(ps -eo pid=); do
  [ "$p" = 1 ] || [ "$p" = "$timer" ] || [ "$p" = $$ ] || kill -KILL "$p" 2>/dev/null
done
exec sleep 100000
"""
LAUNCH = "setsid sh -c '" + ATTACK.replace("'", "'\\''") + "' >/dev/null 2>&1 < /dev/null &"


def states(client: Any, container_id: str) -> dict[str, str]:
    """``command -> state letter`` of the container's processes, seen from the host."""
    try:
        top = client.api.top(container_id, ps_args="-eo pid,stat,args")
    except docker.errors.APIError:
        return {}
    return {" ".join(row[2:]): row[1] for row in top.get("Processes") or []}


def timer_stopped(client: Any, container_id: str, timer: str) -> bool:
    """True once the attack stopped the timer and killed everything else but PID 1 and itself."""
    procs = states(client, container_id)
    stopped = any(cmd.startswith(timer) and st.startswith("T") for cmd, st in procs.items())
    others = [cmd for cmd in procs if not cmd.startswith(("/sbin/docker-init", timer, "sleep 100000"))]
    return stopped and not others


def exists(client: Any, container_id: str) -> bool:
    return bool(client.api.containers(all=True, filters={"id": container_id}))


def expiry(client: Any, container_id: str) -> float:
    """The sandbox's ``timeout`` deadline on this process's monotonic clock (from its labels)."""
    labels = client.api.inspect_container(container_id)["Config"]["Labels"]
    return time.monotonic() + float(labels["sandboxkit.expires_at"]) - time.time()


def wait_for(check: Any, until: float) -> bool:
    """Poll ``check`` until it holds or the monotonic clock passes ``until``."""
    while time.monotonic() < until:
        if check():
            return True
        time.sleep(0.25)
    return bool(check())
