"""Container labels: the provider's only memory of a sandbox, so any client can reconnect to it or reap it.

Labels are set once at create (Docker cannot change them later) and never hold secret values.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterable, Mapping

from sandboxkit.spi import SandboxSpec

PREFIX = "sandboxkit"
MANAGED = f"{PREFIX}.managed"
PROVIDER = f"{PREFIX}.provider"
APP = f"{PREFIX}.app"
NAME = f"{PREFIX}.name"
CREATED_AT = f"{PREFIX}.created_at"
#: epoch seconds when the lifetime ends (PID 1 exits then by itself)
EXPIRES_AT = f"{PREFIX}.expires_at"
#: ``host/boot/pid/start`` of the process that created the sandbox; absent for detached sandboxes
OWNER = f"{PREFIX}.owner"
IDLE_TIMEOUT = f"{PREFIX}.idle_timeout"
#: "1": clients report this sandbox's commands to the warden, which then enforces ``idle_timeout`` too
#: (sandboxes made by clients that do not report keep only their in-container watchdog)
IDLE_REPORTS = f"{PREFIX}.idle_reports"
#: comma-separated secret names (values live only in the local store)
SECRETS = f"{PREFIX}.secrets"
#: comma-separated keys of ``env=``, which win over secrets as in Modal
ENV_KEYS = f"{PREFIX}.env_keys"
CPU = f"{PREFIX}.cpu"
CPUSET = f"{PREFIX}.cpuset"
MEMORY_MIB = f"{PREFIX}.memory_mib"
GPU = f"{PREFIX}.gpu"
GPU_MODE = f"{PREFIX}.gpu_mode"
TAG = f"{PREFIX}.tag."
#: comma-separated ports published on 127.0.0.1 (``ports=``)
PORTS = f"{PREFIX}.ports"
#: the snapshot the sandbox started from
SNAPSHOT = f"{PREFIX}.from_snapshot"
#: "1": /tmp is the sandbox's anonymous volume (gVisor), which a snapshot must take in by itself
TMP_VOLUME = f"{PREFIX}.tmp_volume"
#: bookkeeping labels of the spec (``labels=``, ``$SANDBOXKIT_LABELS``)
USER = f"{PREFIX}.label."
_SANDBOX_KEYS = frozenset(
    {MANAGED, PROVIDER, APP, NAME, CREATED_AT, EXPIRES_AT, OWNER, IDLE_TIMEOUT, SECRETS, ENV_KEYS}
    | {CPU, CPUSET, MEMORY_MIB, GPU, GPU_MODE, PORTS, SNAPSHOT, TMP_VOLUME}
)
#: a spec label with this key names the sandbox's owner itself (e.g. the CLI's ``create``), so the
#: creating process's death does not make it an orphan
OWNER_KEY = "owner"


def for_sandbox(spec: SandboxSpec, now: float, *, cpuset: str | None, gpu: tuple[str, bool] | None) -> dict[str, str]:
    """Every label of a new sandbox: identity, lifetime, owner, and what a reconnecting client must know."""
    labels = {
        MANAGED: "1",
        PROVIDER: "docker",
        APP: spec.app,
        CREATED_AT: f"{now:.3f}",
        EXPIRES_AT: f"{now + spec.timeout:.3f}",
        **{f"{TAG}{k}": v for k, v in spec.tags.items()},
        **{f"{USER}{k}": v for k, v in spec.labels.items()},
    }
    optional = {
        NAME: spec.name,
        # a spec label "owner" names the owner itself: the creating process may exit on purpose
        OWNER: None if OWNER_KEY in spec.labels else owner_here(),
        IDLE_TIMEOUT: None if spec.idle_timeout is None else f"{spec.idle_timeout:g}",
        IDLE_REPORTS: None if spec.idle_timeout is None else "1",
        SECRETS: join(spec.secrets) or None,
        ENV_KEYS: join(spec.env) or None,
        CPU: None if spec.cpu is None else f"{spec.cpu:g}",
        CPUSET: cpuset,
        MEMORY_MIB: None if spec.memory_mib is None else str(spec.memory_mib),
        GPU: None if gpu is None else gpu[0],
        GPU_MODE: None if gpu is None else ("simulate" if gpu[1] else "real"),
        PORTS: join(str(p) for p in spec.ports) or None,
        SNAPSHOT: spec.snapshot,
    }
    labels.update({k: v for k, v in optional.items() if v is not None})
    return labels


def is_sandbox_label(key: str) -> bool:
    """True for a label sandboxkit sets on a sandbox container (not an image's own ``sandboxkit.image.*``)."""
    return key in _SANDBOX_KEYS or key.startswith((TAG, USER))


def present(labels: Mapping[str, str]) -> dict[str, str]:
    """``labels`` without blanked ones: a sandbox started from a snapshot inherits the snapshotted
    sandbox's labels as ``""`` (see ``_snapshots``), which mean nothing."""
    return {k: v for k, v in labels.items() if v != ""}


def join(names: Iterable[str]) -> str:
    return ",".join(names)


def split(value: str | None) -> list[str]:
    return [part for part in (value or "").split(",") if part]


def tags(labels: Mapping[str, str]) -> dict[str, str]:
    return {k[len(TAG) :]: v for k, v in labels.items() if k.startswith(TAG)}


def _boot_id() -> str:
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            return f.read().strip()[:8]
    except OSError:
        return "-"


def _start_time(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (tells a reused pid apart), or None if gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except FileNotFoundError:
        return None
    except OSError:
        return "-"
    return stat.rsplit(")", 1)[1].split()[19]


def owner_here() -> str:
    """This process as an owner label value: ``host/boot/pid/start``."""
    pid = os.getpid()
    return f"{socket.gethostname()}/{_boot_id()}/{pid}/{_start_time(pid) or '-'}"


def owner_alive(owner: str) -> bool | None:
    """Whether the owning process still runs; None when this machine cannot tell (another host or boot)."""
    try:
        host, boot, pid_text, start = owner.split("/")
        pid = int(pid_text)
    except ValueError:
        return None
    if host != socket.gethostname() or boot != _boot_id() or boot == "-":
        return None
    now = _start_time(pid)
    if now is None:
        return False
    return start in ("-", now) or now == "-"
