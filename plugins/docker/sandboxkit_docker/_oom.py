"""OOM kills and failed forks of one sandbox, counted by its memory and pids cgroups.

An OOM kill inside ``docker exec`` leaves Docker's ``State.OOMKilled`` false, but the cgroup's
``oom_kill`` counter goes up; a fork refused at the pids limit raises the pids cgroup's ``max``
counter (``pids.events``). On a local engine the counter is read from the host's cgroupfs
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
#: Where a container's pids cgroup counts forks refused at its limit (``max N``).
_PIDS_HOST_PATHS = (
    "/sys/fs/cgroup/pids/docker/{id}/pids.events",
    "/sys/fs/cgroup/pids/system.slice/docker-{id}.scope/pids.events",
    "/sys/fs/cgroup/docker/{id}/pids.events",
    "/sys/fs/cgroup/system.slice/docker-{id}.scope/pids.events",
)
_PIDS_INSIDE = ["cat", "/sys/fs/cgroup/pids/pids.events", "/sys/fs/cgroup/pids.events"]


def parse(text: str, key: str = "oom_kill") -> int | None:
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        if name == key and value.strip().isdigit():
            return int(value)
    return None


class OomCounter:
    """Tells whether the sandbox's memory limit killed a process while a command ran."""

    host_paths: tuple[str, ...] = _HOST_PATHS
    inside: list[str] = INSIDE
    key = "oom_kill"

    def __init__(self, container_id: str, run_inside: Callable[[list[str]], Awaitable[str]]) -> None:
        self.run_inside = run_inside
        self.host_path: str | None = None
        for template in self.host_paths:
            path = template.format(id=container_id)
            if parse(_read(path) or "", self.key) is not None:
                self.host_path = path
                break
        #: last value seen from inside (remote engines); a new sandbox starts at 0
        self.baseline: int | None = None

    async def prime(self) -> None:
        """Learn the counter of a sandbox this client did not create (remote engines only)."""
        if self.host_path is None:
            try:
                self.baseline = parse(await self.run_inside(self.inside), self.key)
            except Exception:
                self.baseline = None

    def before(self) -> int | None:
        """The counter now (host read), or the last value seen from inside."""
        if self.host_path is not None:
            return parse(_read(self.host_path) or "", self.key)
        return self.baseline

    async def killed_since(self, before: int | None, exit_code: int) -> bool:
        """Whether the counter rose since ``before``."""
        if self.host_path is not None:
            after = parse(_read(self.host_path) or "", self.key)
        elif exit_code == 0:
            return False
        else:
            try:
                after = parse(await self.run_inside(self.inside), self.key)
            except Exception:  # no cat in the image, pids exhausted: cannot tell
                return False
            self.baseline = after if after is not None else self.baseline
        return before is not None and after is not None and after > before


class PidsCounter(OomCounter):
    """Tells whether a fork was refused at the sandbox's pids limit while a command ran."""

    host_paths = _PIDS_HOST_PATHS
    inside = _PIDS_INSIDE
    key = "max"


def _read(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return None
