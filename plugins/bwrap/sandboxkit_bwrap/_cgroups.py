"""The cgroups of a sandbox (cgroup v1, as root): limits for the whole sandbox, one cgroup per command.

Layout, for sandbox ``ID``: ``memory``, ``cpu`` and ``pids`` hold ``/sys/fs/cgroup/C/sandboxkit/ID``
with the sandbox's limits; ``freezer`` holds ``.../sandboxkit/ID/init`` (the sandbox's PID 1) and
``.../sandboxkit/ID/cmd-N`` per command. A command's whole tree (``setsid``, ``env -i`` and
double-forked children too) stays in its freezer cgroup, so a timeout freezes it, SIGKILLs
every member and thaws it: nothing can fork away in between. A spawned process's start runs in
``.../sandboxkit/ID/proc-N`` instead, which its end leaves to the process (see ``_exec.run``).
Closing the sandbox kills every member of all of them. OOM kills are counted by the memory
cgroup's ``oom_kill`` field.
"""

from __future__ import annotations

import os
import signal
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

ROOT = Path(os.environ.get("SANDBOXKIT_BWRAP_CGROUP_ROOT", "/sys/fs/cgroup"))
CONTROLLERS = ("memory", "cpu", "pids", "freezer")
PARENT = "sandboxkit"
CPU_PERIOD_US = 100_000
#: A command's cgroup (killed when the command's call ends early) or a spawned process's (left to it).
Kind = Literal["cmd", "proc"]
#: Seconds after which an empty ``proc-N`` cgroup is removed (a start that long was killed: its timeout is 120 s).
SWEEP_AGE = 600.0


def unavailable_reason() -> str | None:
    """Why sandbox cgroups cannot be made on this host, or None when they can."""
    if (ROOT / "cgroup.controllers").exists():
        return (
            "this host uses cgroup v2, which the bwrap provider does not drive yet (it needs cgroup v1 "
            "with the memory, cpu, pids and freezer controllers)"
        )
    missing = [c for c in CONTROLLERS if not (ROOT / c / "cgroup.procs").exists()]
    if missing:
        return f"cgroup v1 controllers {', '.join(missing)} are not mounted under {ROOT}"
    if os.geteuid() != 0:
        return "the bwrap provider needs root to make cgroups (cgroup v1 has no delegation to users)"
    return None


@dataclass(frozen=True)
class SandboxCgroups:
    """Paths of one sandbox's cgroups."""

    sandbox_id: str

    def dir(self, controller: str) -> Path:
        return ROOT / controller / PARENT / self.sandbox_id

    @property
    def all_dirs(self) -> list[Path]:
        return [self.dir(c) for c in CONTROLLERS]

    @property
    def commands_dir(self) -> Path:
        return self.dir("freezer")

    def limit_procs(self) -> list[Path]:
        """The ``cgroup.procs`` files every process of the sandbox joins (limits)."""
        return [self.dir(c) / "cgroup.procs" for c in ("memory", "cpu", "pids")]

    def init_procs(self) -> list[Path]:
        return [*self.limit_procs(), self.commands_dir / "init" / "cgroup.procs"]

    def create(self, *, memory_mib: int | None, cpu: float | None, pids_limit: int) -> None:
        for d in self.all_dirs:
            d.mkdir(parents=True, exist_ok=True)
        (self.commands_dir / "init").mkdir(exist_ok=True)
        if memory_mib is not None:
            limit = str(memory_mib << 20)
            _set(self.dir("memory") / "memory.limit_in_bytes", limit)
            memsw = self.dir("memory") / "memory.memsw.limit_in_bytes"
            if memsw.exists():  # no swap beyond the limit
                _set(memsw, limit)
        if cpu is not None:
            _set(self.dir("cpu") / "cpu.cfs_period_us", str(CPU_PERIOD_US))
            _set(self.dir("cpu") / "cpu.cfs_quota_us", str(max(1000, int(cpu * CPU_PERIOD_US))))
        _set(self.dir("pids") / "pids.max", str(pids_limit))

    def new_command(self, kind: Kind = "cmd") -> CommandCgroup:
        """A freezer cgroup for one command (``cmd``) or one spawned process's start (``proc``)."""
        if kind == "proc":
            self.sweep("proc")
        path = self.commands_dir / f"{kind}-{uuid.uuid4().hex[:12]}"
        path.mkdir()
        return CommandCgroup(path, [*self.limit_procs(), path / "cgroup.procs"])

    def sweep(self, kind: Kind) -> None:
        """Remove this kind's cgroups whose processes all ended (rmdir refuses a cgroup with members).

        Only those older than :data:`SWEEP_AGE`: a younger one may be another client's, made for a
        start that has not joined it yet.
        """
        young = time.time() - SWEEP_AGE
        for path in self.commands_dir.glob(f"{kind}-*"):
            try:
                if path.stat().st_ctime < young:
                    path.rmdir()
            except OSError:
                pass

    def oom_kills(self) -> int:
        try:
            text = (self.dir("memory") / "memory.oom_control").read_text()
        except OSError:
            return 0
        for line in text.splitlines():
            key, _, value = line.partition(" ")
            if key == "oom_kill":
                return int(value)
        return 0


@dataclass(frozen=True)
class CommandCgroup:
    """The freezer cgroup of one command; ``procs`` are the files its first process joins."""

    path: Path
    procs: list[Path]

    def pids(self) -> list[int]:
        """Every process in this cgroup and the cgroups a command made below it."""
        pids = []
        for procs in self.path.rglob("cgroup.procs"):
            try:
                pids += [int(p) for p in procs.read_text().split()]
            except OSError:
                pass
        return pids

    def kill(self) -> None:
        """Freeze, SIGKILL every member, thaw; repeat until empty (bounded)."""
        state = self.path / "freezer.state"
        for _ in range(100):
            if not self.pids():
                return
            _write(state, "FROZEN")
            for _ in range(100):
                try:
                    if state.read_text().strip() != "FREEZING":
                        break
                except OSError:
                    return
                time.sleep(0.005)
            for pid in self.pids():
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            _write(state, "THAWED")
            time.sleep(0.005)

    def remove(self) -> None:
        """rmdir it and any cgroup a command made below it, deepest first."""
        below = sorted((p for p in self.path.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts))
        for path in [*below, self.path]:
            for _ in range(50):
                try:
                    path.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.01)


def _write(path: Path, value: str) -> None:
    try:
        path.write_text(value)
    except FileNotFoundError:
        pass


def _set(path: Path, value: str) -> None:
    """Set a limit; a missing control file means the limit cannot hold, which is an error."""
    path.write_text(value)
