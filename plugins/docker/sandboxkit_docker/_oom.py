"""OOM kills of one sandbox, counted by its memory cgroup.

An OOM kill inside ``docker exec`` leaves Docker's ``State.OOMKilled`` false, but the cgroup's
``oom_kill`` counter goes up. On a local engine the counter is read from the host's cgroupfs
(tens of microseconds, before and after each command); on a remote engine from inside the
sandbox with one extra exec, only after a command that exits non-zero.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

#: Where a container's memory cgroup counts OOM kills (v1 and v2, cgroupfs and systemd drivers).
_HOST_PATHS = (
    "/sys/fs/cgroup/memory/docker/{id}/memory.oom_control",
    "/sys/fs/cgroup/memory/system.slice/docker-{id}.scope/memory.oom_control",
    "/sys/fs/cgroup/docker/{id}/memory.events",
    "/sys/fs/cgroup/system.slice/docker-{id}.scope/memory.events",
)
#: The same counter as the sandbox sees its own cgroup.
INSIDE = ["cat", "/sys/fs/cgroup/memory/memory.oom_control", "/sys/fs/cgroup/memory.events"]


def parse(text: str) -> int | None:
    for line in text.splitlines():
        key, _, value = line.partition(" ")
        if key == "oom_kill" and value.strip().isdigit():
            return int(value)
    return None


class OomCounter:
    """Tells whether the sandbox's memory limit killed a process while a command ran."""

    def __init__(self, container_id: str, run_inside: Callable[[list[str]], Awaitable[str]]) -> None:
        self.run_inside = run_inside
        self.host_path: str | None = None
        for template in _HOST_PATHS:
            path = template.format(id=container_id)
            if parse(_read(path) or "") is not None:
                self.host_path = path
                break
        #: last value seen from inside (remote engines); a new sandbox starts at 0
        self.baseline: int | None = None

    async def prime(self) -> None:
        """Learn the counter of a sandbox this client did not create (remote engines only)."""
        if self.host_path is None:
            try:
                self.baseline = parse(await self.run_inside(INSIDE))
            except Exception:
                self.baseline = None

    def before(self) -> int | None:
        """The counter now (host read), or the last value seen from inside."""
        if self.host_path is not None:
            return parse(_read(self.host_path) or "")
        return self.baseline

    async def killed_since(self, before: int | None, exit_code: int) -> bool:
        """Whether the counter rose since ``before``."""
        if self.host_path is not None:
            after = parse(_read(self.host_path) or "")
        elif exit_code == 0:
            return False
        else:
            try:
                after = parse(await self.run_inside(INSIDE))
            except Exception:  # no cat in the image, pids exhausted: cannot tell
                return False
            self.baseline = after if after is not None else self.baseline
        return before is not None and after is not None and after > before


def _read(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return None
