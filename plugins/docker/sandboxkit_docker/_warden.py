"""The warden: one long-lived container per engine that ends sandboxes past their deadline from outside.

A sandbox's own PID 1 timer (``_lifetime``) can be stopped by root inside it; the warden cannot.
It runs ``_warden_main`` in the offline base image with only the engine socket mounted, no
network (no sandbox can reach it), restart policy ``unless-stopped``, and is started on demand
and idempotently at each create (one inspect when it already runs; a fixed name makes two
clients starting it at once safe). ``SANDBOXKIT_DOCKER_WARDEN=off`` turns it off.

It also has the powers to mount each sandbox's disk-capped writable layer in the engine's mount
namespace (``MOUNT_POWERS``: the host's PID namespace, SYS_ADMIN, loop devices), which its disk
daemon (``_diskd``, served to clients through ``_diskcap``) uses. That adds nothing: the engine
socket it holds is already root on the engine's host. An engine that refuses those powers gets a
warden without them (and no disk daemon), and its sandboxes no disk cap from it. :func:`stop`
stops it gracefully first, so that the disk daemon deletes its pool of formatted filesystems.

Idle timeouts need to know when a sandbox was last busy, which the sandbox must not be able to
fake: :class:`Activity` has each client write that into the warden container (never into the
sandbox), at most every ``idle_timeout / 4`` seconds (2 s at most) and off the command's path.
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import io
import json
import logging
import os
import tarfile
import threading
import time
from collections.abc import Iterator
from importlib import resources
from typing import Any, Protocol

import docker.errors

from sandboxkit.spi import DEFAULT_DISK_MIB, ErrorCode, SandboxError
from sandboxkit_docker._errors import PROVIDER
from sandboxkit_docker.images import DEFAULT_IMAGE

NAME = "sandboxkit-warden"
#: label of the warden container; its value is the version of its program
LABEL = "sandboxkit.warden"
ENV_SWITCH = "SANDBOXKIT_DOCKER_WARDEN"
ENV_SOCKET = "SANDBOXKIT_DOCKER_WARDEN_SOCKET"
ENV_IMAGE = "SANDBOXKIT_DOCKER_WARDEN_IMAGE"
ACTIVITY_DIR = "sandboxkit-activity"
#: longest pause between two activity reports of a busy sandbox, seconds
MAX_REPORT_INTERVAL = 2.0

log = logging.getLogger(__name__)
PROGRAM = resources.files(__package__).joinpath("_warden_main.py").read_text()
#: the disk daemon the warden runs beside it when it can mount (``_diskd``), and its configuration
DISKD = resources.files(__package__).joinpath("_diskd.py").read_text()
DISKD_CONFIG = json.dumps({"default_mib": DEFAULT_DISK_MIB})
#: label of a warden that can mount disk-capped layers (MOUNT_POWERS), "1" or "0"
MOUNTS_LABEL = "sandboxkit.warden.mounts"
#: label with the version of the disk daemon's protocol a warden serves ("0": none); a client
#: replaces a mounting warden only when its own is newer, so clients of two versions never take turns;
#: bump it with any change a daemon of the previous version would not understand
DISKD_LABEL = "sandboxkit.warden.diskd"
DISKD_PROTOCOL = 1
VERSION = hashlib.sha256((PROGRAM + DISKD + DISKD_CONFIG + "mounts pid=host").encode()).hexdigest()[:12]


def enabled() -> bool:
    """False when ``$SANDBOXKIT_DOCKER_WARDEN`` is ``off`` (or 0/false/no)."""
    return os.environ.get(ENV_SWITCH, "on").strip().lower() not in ("off", "0", "false", "no")


def engine_socket() -> str:
    """The engine's unix socket as the engine host sees it: the warden bind-mounts it."""
    if os.environ.get(ENV_SOCKET):
        return os.environ[ENV_SOCKET]
    host = os.environ.get("DOCKER_HOST", "")
    return host.removeprefix("unix://") if host.startswith("unix://") else "/var/run/docker.sock"


def inspect(api: Any) -> dict[str, Any] | None:
    """The warden container's inspect document, or None when there is none."""
    try:
        info: dict[str, Any] = api.inspect_container(NAME)
        return info
    except docker.errors.NotFound:
        return None


def running(info: dict[str, Any] | None) -> bool:
    return bool(info and (info.get("State") or {}).get("Running"))


def _labels(info: dict[str, Any] | None) -> dict[str, str]:
    return ((info or {}).get("Config") or {}).get("Labels") or {}


def can_mount(info: dict[str, Any] | None) -> bool:
    """True when this warden can mount disk-capped layers."""
    return running(info) and _labels(info).get(MOUNTS_LABEL) == "1"


def serves_diskd(info: dict[str, Any] | None) -> bool:
    """True when this warden mounts disk caps through a disk daemon that speaks this client's protocol."""
    return can_mount(info) and _diskd_protocol(info) >= DISKD_PROTOCOL


def _diskd_protocol(info: dict[str, Any] | None) -> int:
    try:
        return int(_labels(info).get(DISKD_LABEL) or 0)
    except ValueError:
        return 0


def _outdated(info: dict[str, Any] | None) -> bool:
    """A warden of another version that cannot mount, or mounts with an older disk protocol (an
    unprivileged one of this version stays: the engine refused more)."""
    if info is None or _labels(info).get(LABEL) == VERSION:
        return False
    return _labels(info).get(MOUNTS_LABEL) != "1" or _diskd_protocol(info) < DISKD_PROTOCOL


def ensure(api: Any) -> None:
    """Make sure the warden runs: one inspect when it does, else create (race-safe) and start it."""
    if not enabled():
        return
    info = inspect(api)
    for attempt in range(3):  # other clients may be creating, starting or replacing it at the same time
        if running(info) and not _outdated(info):
            return
        try:
            if _outdated(info) or (info is not None and not running(info) and _labels(info).get(LABEL) != VERSION):
                with contextlib.suppress(docker.errors.NotFound):
                    api.remove_container(NAME, force=True)  # stopped and of another version, or one that cannot mount
                info = None
            if info is None:
                _start(api)
            else:
                api.start(NAME)  # idempotent: an engine answers 304 when it already runs
            return
        except docker.errors.APIError as exc:
            info = inspect(api)
            if attempt == 2 and not running(info):
                raise _failure(exc) from None
            time.sleep(0.2)


def _start(api: Any) -> None:
    """Create and start a warden that can mount; where the engine refuses that, one that cannot.

    Only the client whose create succeeded starts it and may fall back: another client's start
    failing while this one starts it must not read as the engine refusing the powers."""
    if not _create(api, mounts=True):
        _await_theirs(api)
        return
    for _attempt in range(2):
        try:
            api.start(NAME)
            return
        except docker.errors.APIError as exc:  # e.g. an authorization plugin, or a rootless engine
            if running(inspect(api)):
                return  # another client's start won
            refusal = exc
            time.sleep(0.5)
    log.warning("the engine refused the warden the powers to mount (%s): sandboxes get no disk cap from it", refusal)
    with contextlib.suppress(docker.errors.NotFound):
        api.remove_container(NAME, force=True)
    _create(api, mounts=False)
    api.start(NAME)


#: how long a client waits for the warden another client created to run before starting it itself
THEIRS_WAIT = 10.0


def _await_theirs(api: Any) -> None:
    """Another client created the warden and starts it (or falls back): wait for it to run."""
    deadline = time.monotonic() + THEIRS_WAIT
    while time.monotonic() < deadline:
        if running(inspect(api)):
            return
        time.sleep(0.1)
    api.start(NAME)  # its creator went away between create and start; an APIError has ensure() retry


#: what the warden needs to mount disk-capped layers in the engine's mount namespace: enter it
#: (SYS_ADMIN, SYS_CHROOT, SYS_PTRACE on the host's processes), copy the layer's files (CHOWN,
#: DAC_OVERRIDE, FOWNER) and open loop devices (block 7, /dev/loop-control)
MOUNT_POWERS: dict[str, Any] = {
    "pid_mode": "host",
    "cap_drop": ["ALL"],
    "cap_add": ["SYS_ADMIN", "SYS_CHROOT", "SYS_PTRACE", "CHOWN", "DAC_OVERRIDE", "FOWNER"],
    "device_cgroup_rules": ["b 7:* rwm", "c 10:237 rwm"],
    "security_opt": ["no-new-privileges", "apparmor=unconfined"],
}


def _create(api: Any, *, mounts: bool) -> bool:
    """Create the warden container: False when another client created it first."""
    image = os.environ.get(ENV_IMAGE) or DEFAULT_IMAGE
    powers = MOUNT_POWERS if mounts else {"cap_drop": ["ALL"], "security_opt": ["no-new-privileges"]}
    host_config = api.create_host_config(
        binds=[f"{engine_socket()}:/var/run/docker.sock"],
        network_mode="none",
        restart_policy={"Name": "unless-stopped"},
        init=True,
        pids_limit=4096,
        mem_limit="1g",
        log_config={"Type": "json-file", "Config": {"max-size": "1m", "max-file": "1"}},
        **powers,
    )
    labels = {LABEL: VERSION, MOUNTS_LABEL: "1" if mounts else "0", DISKD_LABEL: str(DISKD_PROTOCOL if mounts else 0)}
    try:
        api.create_container(
            image,
            ["python3", "-c", PROGRAM, DISKD, DISKD_CONFIG] if mounts else ["python3", "-c", PROGRAM],
            name=NAME,
            labels=labels,
            network_disabled=True,
            host_config=host_config,
        )
    except docker.errors.ImageNotFound:
        raise SandboxError(
            ErrorCode.SANDBOX_CREATION_FAILED,
            f"the warden that enforces sandbox lifetimes needs the image {image!r}, which is not present; "
            f"run `sandboxkit images bootstrap` (or set {ENV_SWITCH}=off to rely on each sandbox's own timer)",
            provider=PROVIDER,
        ) from None
    except docker.errors.APIError as exc:
        if exc.status_code != 409:
            raise
        return False  # another client created it first
    return True


def _failure(exc: Exception) -> SandboxError:
    return SandboxError(
        ErrorCode.SANDBOX_CREATION_FAILED,
        f"could not start the warden container {NAME!r} that enforces sandbox lifetimes ({exc}); "
        f"see `sandboxkit warden status` and `docker logs {NAME}`, or set {ENV_SWITCH}=off "
        "to rely on each sandbox's own timer",
        provider=PROVIDER,
    )


def status(api: Any) -> dict[str, Any]:
    """What ``sandboxkit warden status`` shows."""
    info = inspect(api)
    state = info.get("State") or {} if info else {}
    labels = ((info or {}).get("Config") or {}).get("Labels") or {}
    return {
        "name": NAME,
        "enabled": enabled(),
        "state": state.get("Status", "absent"),
        "started_at": state.get("StartedAt") if info else None,
        "version": labels.get(LABEL),
        "current": labels.get(LABEL) == VERSION,
        "mounts_disk_caps": can_mount(info),
        "socket": engine_socket(),
        "log": api.logs(NAME, tail=5).decode(errors="replace").splitlines() if info else [],
    }


def stop(api: Any) -> bool:
    """Stop the warden (its disk daemon deletes its pool of formatted filesystems), then remove it;
    True when there was one. The next create starts it again."""
    try:
        api.stop(NAME, timeout=STOP_TIMEOUT)
    except docker.errors.NotFound:
        return False
    except docker.errors.APIError as exc:
        log.debug("could not stop the warden gracefully: %s", exc)
    try:
        api.remove_container(NAME, force=True)
    except docker.errors.NotFound:
        pass
    return True


#: seconds the warden has to stop (and delete its pool) before the engine kills it
STOP_TIMEOUT = 15


class _HasActivity(Protocol):
    def activity(self) -> Activity: ...


@contextlib.contextmanager
def command(provider: _HasActivity, sandbox_id: str, idle_timeout: float | None) -> Iterator[None]:
    """Around one command of a sandbox: tells the warden it is busy, then idle (nothing without idle_timeout)."""
    if idle_timeout is None:
        yield
        return
    activity = provider.activity()
    activity.begin(sandbox_id, idle_timeout)
    try:
        yield
    finally:
        activity.end(sandbox_id)


def report_interval(idle_timeout: float) -> float:
    """Seconds between two activity reports of one sandbox."""
    return min(idle_timeout / 4, MAX_REPORT_INTERVAL)


class _Track:
    def __init__(self, interval: float) -> None:
        self.interval = interval
        self.busy = 0
        self.idle_from = time.monotonic()
        self.dirty = False
        self.written = float("-inf")


class Activity:
    """Reports, per idle-limited sandbox, when its idle clock starts, into the warden container.

    ``begin``/``end`` around each command only touch memory; a daemon thread writes at most every
    :func:`report_interval` seconds per sandbox: the current state, and every interval while a
    command runs (so a client that dies mid-command stops vouching for it). Pending reports are
    written at ``flush`` and at interpreter exit.
    """

    def __init__(self, api: Any) -> None:
        self._api = api
        self._tracks: dict[str, _Track] = {}
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        atexit.register(self.flush)

    def begin(self, sandbox_id: str, idle_timeout: float) -> None:
        with self._cond:
            track = self._tracks.setdefault(sandbox_id, _Track(report_interval(idle_timeout)))
            track.busy += 1
            track.dirty = True
            self._wake()

    def end(self, sandbox_id: str) -> None:
        with self._cond:
            track = self._tracks.get(sandbox_id)
            if track is None:
                return
            track.busy = max(0, track.busy - 1)
            track.idle_from = time.monotonic()
            track.dirty = True
            self._wake()

    def forget(self, sandbox_id: str) -> None:
        with self._cond:
            self._tracks.pop(sandbox_id, None)

    def flush(self) -> None:
        """Write every pending report now (provider close, interpreter exit)."""
        self._write(self._due(force=True))

    def _wake(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._loop, name="sandboxkit-warden-activity", daemon=True)
            self._thread.start()
        self._cond.notify()

    def _due(self, force: bool = False) -> list[tuple[str, float]]:
        """``(sandbox id, offset)`` of each report to write now; marks them written."""
        now = time.monotonic()
        due = []
        with self._cond:
            for sandbox_id, t in self._tracks.items():
                if (t.dirty or t.busy) and (force or now - t.written >= t.interval):
                    # a running command: the next report comes within two intervals (one of slack)
                    offset = 2 * t.interval + 1.0 if t.busy else t.idle_from - now
                    due.append((sandbox_id, offset))
                    t.dirty, t.written = False, now
        return due

    def _next_wait(self) -> float | None:
        now = time.monotonic()
        with self._cond:
            waits = [t.written + t.interval - now for t in self._tracks.values() if t.dirty or t.busy]
        return None if not waits else max(0.01, min(waits))

    def _loop(self) -> None:
        while True:
            self._write(self._due())
            with self._cond:
                wait = self._next_wait()
                if wait is None:
                    self._cond.wait(30.0)
                    if self._next_wait() is None:
                        self._thread = None
                        return
                else:
                    self._cond.wait(wait)

    def _write(self, reports: list[tuple[str, float]]) -> None:
        if not reports:
            return
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tar:
            for sandbox_id, offset in reports:
                data = f"{offset:.3f}\n".encode()
                info = tarfile.TarInfo(f"{ACTIVITY_DIR}/{sandbox_id}")
                info.size, info.mtime = len(data), int(time.time())
                tar.addfile(info, io.BytesIO(data))
        try:
            self._api.put_archive(NAME, "/", buf.getvalue())
        except Exception as exc:  # no warden (turned off or stopped): the sandbox's own watchdog still counts
            log.debug("could not report sandbox activity to the warden: %s", exc)
