"""The on-disk registry: one directory per sandbox, found again by any client (from_id, list, gc).

``STATE/sandboxes/ID/record.json`` is written by the creating client before the supervisor
starts; ``ready.json`` by the supervisor once the sandbox runs (its own and the sandbox PID 1's
pid and start time); ``ended`` when it decides to end it. The directory itself is flocked exclusively from before the
supervisor starts until its command agent and network are up (or it ended): commands wait for it.
The supervisor removes the directory last, so a directory whose supervisor is alive is a live
sandbox.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import json
import os
import re
import signal
import stat
import tempfile
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from sandboxkit_bwrap._supervisor import starttime

#: What a sandbox id looks like.
ID = re.compile(r"^[0-9a-f]{16}$")


def state_root() -> Path:
    """``$SANDBOXKIT_BWRAP_DIR``, else /var/lib/sandboxkit/bwrap (root) or ``$XDG_STATE_HOME/sandboxkit/bwrap``.

    ``XDG_STATE_HOME`` defaults to ``~/.local/state``: a non-root client's sandboxes, volumes and
    compiled helpers are its own.
    """
    if os.environ.get("SANDBOXKIT_BWRAP_DIR"):
        return Path(os.environ["SANDBOXKIT_BWRAP_DIR"])
    if os.geteuid() == 0:
        return Path("/var/lib/sandboxkit/bwrap")
    state = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return Path(state) / "sandboxkit" / "bwrap"


def sandboxes_dir() -> Path:
    return state_root() / "sandboxes"


@dataclass(frozen=True, kw_only=True)
class Record:
    """What a client needs to reach a sandbox; no secret values (secrets are resolved per command)."""

    id: str
    name: str | None
    app: str
    tags: dict[str, str] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    created_at: float
    timeout: float
    env: dict[str, str] = field(default_factory=dict)
    workdir: str = "/"
    secrets: list[str] = field(default_factory=list)
    #: names of the volumes it mounts
    volumes: list[str] = field(default_factory=list)

    @property
    def dir(self) -> Path:
        return sandboxes_dir() / self.id

    def save(self) -> None:
        write_private(self.dir / "record.json", json.dumps(asdict(self)))


def write_private(path: Path, text: str) -> None:
    """Write a file only root may read (records hold create-time env; configs, paths)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)


def load(sandbox_id: str) -> Record | None:
    if not isinstance(sandbox_id, str) or not ID.match(sandbox_id):
        return None
    try:
        data: dict[str, Any] = json.loads((sandboxes_dir() / sandbox_id / "record.json").read_text())
    except (OSError, ValueError):
        return None
    return Record(**data)


def all_records() -> list[Record]:
    try:
        names = sorted(os.listdir(sandboxes_dir()))
    except FileNotFoundError:
        return []
    return [r for r in map(load, names) if r is not None]


def ready_state(record: Record) -> dict[str, Any] | None:
    try:
        data: dict[str, Any] = json.loads((record.dir / "ready.json").read_text())
    except (OSError, ValueError):
        return None
    return data


def alive(record: Record, ready: dict[str, Any] | None = None) -> bool:
    """True while the supervisor runs and has not decided to end the sandbox."""
    ready = ready if ready is not None else ready_state(record)
    if ready is None or (record.dir / "ended").exists() or not (record.dir / "ready.json").exists():
        return False
    return bool(
        starttime(int(ready["supervisor_pid"])) == ready["supervisor_start"]
        and starttime(int(ready["init_pid"])) == ready["init_start"]
    )


def supervisor_alive(record: Record) -> bool:
    ready = ready_state(record)
    return ready is not None and bool(starttime(int(ready["supervisor_pid"])) == ready["supervisor_start"])


def mountpoint() -> Path:
    """The empty directory every supervisor mounts its sandbox's root on, in its own mount namespace.

    A non-root client's is ``/tmp/sandboxkit-bwrap-UID``: bwrap runs as the user's subordinate id
    (see ``_userns``) and binds it as the sandbox's ``/``, and it could not pass through a home
    directory of mode 0700 to the state directory.
    """
    if os.geteuid() == 0 or os.environ.get("SANDBOXKIT_BWRAP_DIR"):
        return state_root() / "mnt"
    return Path(tempfile.gettempdir()) / f"sandboxkit-bwrap-{os.geteuid()}"


def ensure_dirs() -> None:
    """The state directories: others may pass through (bwrap runs as the sandbox root's id), not list."""
    _ensure(state_root())
    if os.geteuid() != 0:  # in /tmp, where a cleaner may remove it between two creates
        _ensure_dir(mountpoint())


@functools.cache
def _ensure(root: Path) -> None:
    for path in (root, root / "sandboxes", root / "mnt"):
        _ensure_dir(path)


def _ensure_dir(path: Path) -> None:
    path.mkdir(parents=True, exist_ok=True)
    st = path.lstat()
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid():  # /tmp is everyone's
        raise PermissionError(f"{path} is not a directory of uid {os.geteuid()}; remove it")
    path.chmod(0o711)


@contextlib.contextmanager
def start_lock(record: Record) -> Iterator[int]:
    """An fd holding the exclusive flock on the entry's directory, for the supervisor to inherit.

    The supervisor releases it once the command agent and the network are up (or the sandbox
    ended); commands wait for that with a shared flock.
    """
    fd = os.open(record.dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield fd
    finally:
        os.close(fd)


def start_commands(record: Record, supervisor_pid: int) -> None:
    """Have the supervisor start the agent and the network (SIGUSR1) unless up; block until they are.

    They start with the first command, not at create: every process in a sandbox is started by a
    command through the agent, so nothing inside can see them missing.
    """
    try:
        fd = os.open(record.dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except FileNotFoundError:
        return  # the sandbox is gone
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            pass
        os.kill(supervisor_pid, signal.SIGUSR1)  # the caller has checked that it is that supervisor
        fcntl.flock(fd, fcntl.LOCK_SH)
    except ProcessLookupError:
        return  # the supervisor is gone: the caller finds the sandbox ended
    finally:
        os.close(fd)


@contextlib.contextmanager
def locked() -> Iterator[None]:
    """Serialise name checks and registrations of named sandboxes across processes."""
    ensure_dirs()
    with open(state_root() / "registry.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield
