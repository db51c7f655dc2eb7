"""The cgroups of a sandbox, as root: limits for the whole sandbox, one cgroup per command.

Two layouts, picked per host by :func:`sandbox_cgroups` (cgroup v2 where ``ROOT`` is a cgroup2
mount, else v1), behind one interface:

- **v1**: ``memory``, ``cpu`` and ``pids`` hold ``/sys/fs/cgroup/C/sandboxkit/ID`` with the
  sandbox's limits; ``freezer`` holds ``.../sandboxkit/ID/init`` (the sandbox's PID 1) and
  ``.../sandboxkit/ID/cmd-N`` per command. A process joins one cgroup per hierarchy.
- **v2**: one tree, ``/sys/fs/cgroup/sandboxkit/ID`` with the limits (``memory.max``,
  ``memory.swap.max``, ``cpu.max``, ``pids.max``; the controllers enabled in the parents'
  ``cgroup.subtree_control``), and processes only in its leaves (v2 allows none in a cgroup whose
  children have controllers): ``ID/init``, ``ID/cmd-N``, ``ID/proc-N``. A process joins its leaf.

A non-root client (rootless, cgroup v2 only: v1 has no safe delegation) puts the v2 tree under a
cgroup it was given (:func:`delegated`: ``$SANDBOXKIT_BWRAP_CGROUP_ROOT``, else the nearest
ancestor of its own cgroup that it owns, as systemd's ``Delegate=yes`` leaves it), never the
hierarchy's root. v2 allows no process in a cgroup whose children have controllers: a client
alone in its delegated cgroup moves itself into a leaf of its own there (:data:`CLIENT_LEAF`, as
rootless Podman does); a delegated cgroup that holds other processes is refused.

A command's whole tree (``setsid``, ``env -i`` and double-forked children too) stays in its
cgroup, so a timeout kills every member at once (v2 ``cgroup.kill``; v1, and v2 kernels before
5.14: freeze, SIGKILL every member, thaw): nothing can fork away in between. A spawned process's
start runs in ``ID/proc-N`` instead, which its end leaves to the process (see ``_exec.run``).
Closing the sandbox kills every member of all of them. OOM kills are counted by the sandbox's
memory cgroup (v1 ``memory.oom_control``, v2 ``memory.events``, which counts its whole subtree).
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
#: The controllers a cgroup v2 sandbox needs (v2 freezes without a controller).
V2_CONTROLLERS = ("memory", "cpu", "pids")
PARENT = "sandboxkit"
CPU_PERIOD_US = 100_000
#: A command's cgroup (killed when the command's call ends early) or a spawned process's (left to it).
Kind = Literal["cmd", "proc"]
#: The leaf a rootless client alone in its delegated cgroup moves itself into (its children start there).
CLIENT_LEAF = "sandboxkit-client"
#: Seconds after which an empty ``proc-N`` cgroup is removed (a start that long was killed: its timeout is 120 s).
SWEEP_AGE = 600.0


def is_v2() -> bool:
    """Whether ``ROOT`` is a cgroup2 mount (the unified hierarchy)."""
    return (ROOT / "cgroup.controllers").exists()


def unavailable_reason() -> str | None:
    """Why sandbox cgroups cannot be made on this host, or None when they can."""
    if is_v2():
        return _v2_unavailable_reason() if os.geteuid() == 0 else _delegated_unavailable_reason()
    missing = [c for c in CONTROLLERS if not (ROOT / c / "cgroup.procs").exists()]
    if missing:
        return f"cgroup v1 controllers {', '.join(missing)} are not mounted under {ROOT}"
    if os.geteuid() != 0:
        return (
            "this host runs cgroup v1, which has no safe delegation to a user (a user-owned v1 cgroup can still "
            "move processes anywhere it may write), so a non-root client cannot give sandboxes limits or kill a "
            "command's whole tree; run it as root, or on a cgroup v2 host with a delegated cgroup "
            "(systemd.unified_cgroup_hierarchy=1)"
        )
    return None


def base() -> Path:
    """Where ``sandboxkit/ID`` goes on cgroup v2: ``ROOT`` as root, the delegated cgroup otherwise."""
    if os.geteuid() == 0:
        return ROOT
    found = delegated()
    if found is None:
        raise RuntimeError(_delegated_unavailable_reason() or "no delegated cgroup")
    return found


def _own_cgroup() -> Path:
    """This process's cgroup v2 directory (``0::/path`` of /proc/self/cgroup under the v2 mount)."""
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        if line.startswith("0::"):
            return Path("/sys/fs/cgroup") / line[3:].strip().lstrip("/")
    return Path("/sys/fs/cgroup")


def delegated() -> Path | None:
    """The cgroup a non-root client puts sandboxes under, or None when it has none.

    ``$SANDBOXKIT_BWRAP_CGROUP_ROOT`` if set; else the nearest ancestor of the client's own cgroup
    (itself included; the parent of :data:`CLIENT_LEAF`) that the user owns and may write
    ``cgroup.procs`` and ``cgroup.subtree_control`` in.
    """
    if os.environ.get("SANDBOXKIT_BWRAP_CGROUP_ROOT"):
        return ROOT
    path = _own_cgroup()
    if path.name == CLIENT_LEAF:
        path = path.parent
    while path != Path("/sys/fs/cgroup") and Path("/sys/fs/cgroup") in path.parents:
        if _delegated_to_me(path):
            return path
        path = path.parent
    return None


def _delegated_to_me(path: Path) -> bool:
    try:
        owned = path.stat().st_uid == os.geteuid()
    except OSError:
        return False
    writable = all(os.access(path / f, os.W_OK) for f in ("cgroup.procs", "cgroup.subtree_control"))
    return owned and writable


def _delegated_unavailable_reason() -> str | None:
    """Why a non-root client cannot make sandbox cgroups here (cgroup v2), or None.

    A client alone in its delegated cgroup moves itself into :data:`CLIENT_LEAF` below it, so that
    controllers can be enabled for the sandboxes' cgroups.
    """
    root = delegated()
    how = (
        "a non-root client needs a cgroup v2 subtree delegated to it: run it under systemd with Delegate=yes "
        "(`systemd-run --user --scope -p Delegate=yes ...`, or a service of your user@UID.service), or have root "
        "make one (mkdir a cgroup, enable +memory +cpu +pids in its parent's cgroup.subtree_control, chown it and "
        "its cgroup.procs, cgroup.subtree_control and cgroup.threads to you) and set SANDBOXKIT_BWRAP_CGROUP_ROOT"
    )
    if root is None:
        return f"no cgroup among {_own_cgroup()} and its ancestors is delegated to uid {os.geteuid()}; {how}"
    if not _delegated_to_me(root):
        return f"SANDBOXKIT_BWRAP_CGROUP_ROOT={root} is not a cgroup delegated to uid {os.geteuid()}; {how}"
    available = (root / "cgroup.controllers").read_text().split()
    missing = [c for c in V2_CONTROLLERS if c not in available]
    if missing:
        return (
            f"the delegated cgroup {root} lacks the {', '.join(missing)} controller(s) (its cgroup.controllers lists "
            f"{' '.join(available) or 'none'}); its parent must enable them for it: systemd's Delegate=memory cpu "
            f"pids (user@.service delegates only memory and pids by default), or as root `echo +{' +'.join(missing)} "
            f"> {root.parent}/cgroup.subtree_control`"
        )
    if not (root / "cgroup.kill").exists():
        return (
            "the kernel has no cgroup.kill (Linux 5.14+): a non-root client cannot signal its sandboxes' processes "
            "(they run as its subordinate ids), so it needs cgroup.kill for the whole-tree kill"
        )
    own = _own_cgroup()
    if own != root and root not in own.parents and not os.access(_common(own, root) / "cgroup.procs", os.W_OK):
        return (
            f"this client runs in cgroup {own}, outside SANDBOXKIT_BWRAP_CGROUP_ROOT={root}, and cannot move "
            f"processes between them (cgroup v2 needs write access to their common ancestor's cgroup.procs); run "
            "the client inside that cgroup"
        )
    return _leave_for_leaf(root)


def _common(a: Path, b: Path) -> Path:
    parts = []
    for x, y in zip(a.parts, b.parts, strict=False):
        if x != y:
            break
        parts.append(x)
    return Path(*parts)


def _leave_for_leaf(root: Path) -> str | None:
    """Make ``root`` able to enable controllers: move this client, if alone there, into :data:`CLIENT_LEAF`."""
    enabled = (root / "cgroup.subtree_control").read_text().split()
    if all(c in enabled for c in V2_CONTROLLERS):
        return None
    members = {int(p) for p in (root / "cgroup.procs").read_text().split()}
    if members - {os.getpid()}:
        return (
            f"the delegated cgroup {root} holds processes ({', '.join(map(str, sorted(members)))}), and cgroup v2 "
            "enables controllers for a cgroup's children only when it holds none: start the client in an empty "
            "delegated cgroup of its own (`systemd-run --user --scope -p Delegate=yes ...` puts it alone in one, "
            "and it moves itself into a leaf below it), or move those processes into a child cgroup"
        )
    if members:
        leaf = root / CLIENT_LEAF
        leaf.mkdir(exist_ok=True)
        (leaf / "cgroup.procs").write_text(str(os.getpid()))
    return None


def _v2_unavailable_reason() -> str | None:
    available = (ROOT / "cgroup.controllers").read_text().split()
    missing = [c for c in V2_CONTROLLERS if c not in available]
    if missing:
        return (
            f"the cgroup v2 hierarchy at {ROOT} lacks the {', '.join(missing)} controller(s) "
            f"({ROOT}/cgroup.controllers lists {' '.join(available) or 'none'}); a controller is there only when "
            "no cgroup v1 hierarchy holds it: boot with systemd.unified_cgroup_hierarchy=1 (or unmount its v1 "
            f"hierarchy), or point SANDBOXKIT_BWRAP_CGROUP_ROOT at a cgroup whose cgroup.controllers has them"
        )
    if (ROOT / "cgroup.type").exists() and (ROOT / "cgroup.procs").read_text().strip():
        return (
            f"the cgroup {ROOT} holds processes, so cgroup v2 cannot enable controllers below it; point "
            "SANDBOXKIT_BWRAP_CGROUP_ROOT at the root of the hierarchy or at an empty cgroup"
        )
    return None


def sandbox_cgroups(sandbox_id: str) -> SandboxCgroups:
    """The cgroups of one sandbox, in this host's layout (v2 or v1)."""
    return (CgroupsV2 if is_v2() else CgroupsV1)(sandbox_id)


@dataclass(frozen=True)
class SandboxCgroups:
    """Paths of one sandbox's cgroups; what both layouts share."""

    sandbox_id: str

    def dir(self, controller: str) -> Path:
        """The sandbox's cgroup that holds ``controller``'s limit (and, below it, its processes)."""
        raise NotImplementedError

    @property
    def all_dirs(self) -> list[Path]:
        raise NotImplementedError

    @property
    def commands_dir(self) -> Path:
        """Where ``init``, ``cmd-N`` and ``proc-N`` are."""
        raise NotImplementedError

    def limit_procs(self) -> list[Path]:
        """The ``cgroup.procs`` files every process of the sandbox joins besides its own cgroup (limits)."""
        raise NotImplementedError

    def create(self, *, memory_mib: int | None, cpu: float | None, pids_limit: int) -> None:
        raise NotImplementedError

    def oom_kills(self) -> int:
        raise NotImplementedError

    def init_procs(self) -> list[Path]:
        return [*self.limit_procs(), self.commands_dir / "init" / "cgroup.procs"]

    def new_command(self, kind: Kind = "cmd") -> CommandCgroup:
        """A cgroup for one command (``cmd``) or one spawned process's start (``proc``)."""
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


class CgroupsV1(SandboxCgroups):
    """cgroup v1: a cgroup per controller hierarchy; commands in the freezer's."""

    def dir(self, controller: str) -> Path:
        return ROOT / controller / PARENT / self.sandbox_id

    @property
    def all_dirs(self) -> list[Path]:
        return [self.dir(c) for c in CONTROLLERS]

    @property
    def commands_dir(self) -> Path:
        return self.dir("freezer")

    def limit_procs(self) -> list[Path]:
        return [self.dir(c) / "cgroup.procs" for c in ("memory", "cpu", "pids")]

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

    def oom_kills(self) -> int:
        return _field(self.dir("memory") / "memory.oom_control", "oom_kill")


class CgroupsV2(SandboxCgroups):
    """cgroup v2: one tree; limits on ``sandboxkit/ID``, processes only in its leaves."""

    def dir(self, controller: str = "") -> Path:
        return base() / PARENT / self.sandbox_id

    @property
    def all_dirs(self) -> list[Path]:
        return [self.dir()]

    @property
    def commands_dir(self) -> Path:
        return self.dir()

    def limit_procs(self) -> list[Path]:
        return []  # a process is in exactly one cgroup: its leaf, below the limits

    def create(self, *, memory_mib: int | None, cpu: float | None, pids_limit: int) -> None:
        _enable_controllers(base())  # the delegated cgroup for a non-root client, never the hierarchy's root
        parent = base() / PARENT
        parent.mkdir(exist_ok=True)
        _enable_controllers(parent)
        d = self.dir()
        d.mkdir(exist_ok=True)
        (d / "init").mkdir(exist_ok=True)
        if memory_mib is not None:
            _set(d / "memory.max", str(memory_mib << 20))
            swap = d / "memory.swap.max"
            if swap.exists():  # no swap beyond the limit (absent when the kernel accounts no swap)
                _set(swap, "0")
        if cpu is not None:
            _set(d / "cpu.max", f"{max(1000, int(cpu * CPU_PERIOD_US))} {CPU_PERIOD_US}")
        _set(d / "pids.max", str(pids_limit))

    def oom_kills(self) -> int:
        return _field(self.dir() / "memory.events", "oom_kill")


def _enable_controllers(cgroup: Path) -> None:
    """Enable the sandbox controllers for ``cgroup``'s children (once; a write per missing one)."""
    enabled = (cgroup / "cgroup.subtree_control").read_text().split()
    missing = [c for c in V2_CONTROLLERS if c not in enabled]
    if missing:
        _set(cgroup / "cgroup.subtree_control", " ".join(f"+{c}" for c in missing))


def _field(path: Path, key: str) -> int:
    """The value of ``key`` in a flat-keyed cgroup file (``key value`` lines), 0 when absent."""
    try:
        text = path.read_text()
    except OSError:
        return 0
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        if name == key:
            return int(value)
    return 0


@dataclass(frozen=True)
class CommandCgroup:
    """The cgroup of one command; ``procs`` are the files its first process joins."""

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
        """Kill every member at once (v2 ``cgroup.kill``; else freeze, SIGKILL all, thaw), until empty (bounded)."""
        if (self.path / "cgroup.kill").exists():
            self._kill_at_once()
        else:
            self._freeze_and_kill()

    def _kill_at_once(self) -> None:
        for _ in range(100):
            if not self.pids():
                return
            _write(self.path / "cgroup.kill", "1")
            time.sleep(0.005)

    def _freeze_and_kill(self) -> None:
        for _ in range(100):
            if not self.pids():
                return
            self._freeze(True)
            for pid in self.pids():
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            self._freeze(False)
            time.sleep(0.005)

    def _freeze(self, frozen: bool) -> None:
        """Freeze (and wait until frozen, bounded) or thaw: v1 ``freezer.state``, v2 ``cgroup.freeze``."""
        v1 = (self.path / "freezer.state").exists()
        if v1:
            _write(self.path / "freezer.state", "FROZEN" if frozen else "THAWED")
        else:
            _write(self.path / "cgroup.freeze", "1" if frozen else "0")
        if not frozen:
            return
        for _ in range(100):
            try:
                if v1 and (self.path / "freezer.state").read_text().strip() != "FREEZING":
                    return
                if not v1 and "frozen 1" in (self.path / "cgroup.events").read_text().splitlines():
                    return
            except OSError:
                return
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
