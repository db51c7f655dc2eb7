"""Value types shared by the facade and the provider SPI. Immutable; no provider imports."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from functools import cached_property
from typing import Literal

#: Which output stream a chunk came from.
StreamName = Literal["stdout", "stderr"]

#: Why one file of a batch failed (deepagents' vocabulary).
FileErrorKind = Literal["file_not_found", "permission_denied", "is_directory", "invalid_path"]


def _decode(data: bytes) -> str:
    return data.decode("utf-8", errors="replace")


class SandboxState(StrEnum):
    """Where a sandbox is in its life."""

    #: created, not yet running
    PENDING = "pending"
    #: running and accepting commands
    RUNNING = "running"
    #: stopped by itself (lifetime over, idle, entrypoint exited)
    STOPPED = "stopped"
    #: closed by a client
    TERMINATED = "terminated"
    #: failed to start or died of an error
    FAILED = "failed"
    #: the provider cannot tell
    UNKNOWN = "unknown"


@dataclass(frozen=True, kw_only=True)
class OutputChunk:
    """A piece of live output from ``stream()``. ``str(chunk)`` is its text."""

    stream: StreamName
    data: bytes
    #: ``data`` decoded as UTF-8 (a character split across chunks is decoded whole, in the later chunk)
    text: str

    def __str__(self) -> str:
        return self.text


@dataclass(frozen=True, kw_only=True)
class ExecResult:
    """What a finished command produced. A non-zero ``exit_code`` is a result, not an error."""

    exit_code: int
    stdout_bytes: bytes = b""
    stderr_bytes: bytes = b""
    #: stdout and stderr interleaved in arrival order
    output_bytes: bytes = b""
    #: True when output went past the cap and the rest was dropped (the command still ran to its end)
    truncated: bool = False

    @cached_property
    def stdout(self) -> str:
        """Standard output, decoded as UTF-8 with replacement characters (raw: ``stdout_bytes``)."""
        return _decode(self.stdout_bytes)

    @cached_property
    def stderr(self) -> str:
        """Standard error, decoded like ``stdout``."""
        return _decode(self.stderr_bytes)

    @cached_property
    def output(self) -> str:
        """stdout and stderr together, in the order they arrived."""
        return _decode(self.output_bytes)

    @property
    def ok(self) -> bool:
        """True when the command exited 0."""
        return self.exit_code == 0

    def __repr__(self) -> str:
        return (
            f"ExecResult(exit_code={self.exit_code}, output={self.output[:80]!r}"
            f"{'...' if len(self.output) > 80 else ''}, truncated={self.truncated})"
        )


@dataclass(frozen=True, kw_only=True)
class FileUploadResult:
    """One file of ``upload_files``; ``error`` is None on success."""

    path: str
    error: FileErrorKind | None = None


@dataclass(frozen=True, kw_only=True)
class FileDownloadResult:
    """One file of ``download_files``; ``content`` is None and ``error`` set on failure."""

    path: str
    content: bytes | None = None
    error: FileErrorKind | None = None


@dataclass(frozen=True, kw_only=True)
class SandboxInfo:
    """A live sandbox as ``Sandbox.list`` reports it."""

    id: str
    name: str | None
    app: str
    tags: Mapping[str, str]
    state: SandboxState
    created_at: dt.datetime | None
    provider: str


@dataclass(frozen=True, kw_only=True)
class ExecRequest:
    """One command for a provider to run (SPI). The facade has already validated it."""

    #: the program and its arguments; a shell string arrives as ``["sh", "-c", string]``
    argv: Sequence[str]
    #: working directory; None means the sandbox's workdir
    cwd: str | None = None
    #: extra environment for this command only
    env: Mapping[str, str] = field(default_factory=dict)
    #: exact bytes for standard input; None means no stdin (EOF at once)
    stdin: bytes | None = None
    #: user name or uid; None means the sandbox's default user
    user: str | None = None
    #: seconds before the whole process tree is killed; None means no per-call limit
    timeout: float | None = None


@dataclass(frozen=True, kw_only=True)
class ExecExit:
    """How a command ended (SPI)."""

    exit_code: int
    #: the per-call timeout fired and the process tree was killed
    timed_out: bool = False
    #: a memory limit killed a process of the command
    oom_killed: bool = False
    #: the command failed while the sandbox's process limit refused to start processes
    pids_exhausted: bool = False


@dataclass(frozen=True, kw_only=True)
class VolumeInfo:
    """A provider's named volume, as ``sandboxkit volume ls`` reports it."""

    name: str
    provider: str
    created_at: dt.datetime | None = None
    #: True when sandboxkit created it (``sandboxkit volume create``)
    managed: bool = False


@dataclass(frozen=True, kw_only=True)
class StaleSandbox:
    """A sandbox ``gc`` found expired or orphaned, and whether it was removed."""

    id: str
    name: str | None
    app: str
    state: SandboxState
    #: why it is stale: "expired", "owner_gone", "never_started" or "stopped"
    reason: str
    #: False in a dry run, or when removing it failed
    removed: bool
    provider: str


@dataclass(frozen=True, kw_only=True)
class SpawnRequest:
    """A process to start in the background (SPI, capability PROCESSES). Validated by the facade."""

    #: the program and its arguments; a shell string arrives as ``["sh", "-c", string]``
    argv: Sequence[str]
    cwd: str | None = None
    env: Mapping[str, str] = field(default_factory=dict)
    user: str | None = None
    #: run on a pseudo-terminal (capability PTY); output then arrives as stdout only
    pty: bool = False
    #: the terminal's (rows, cols) when ``pty``; None means the provider's default (24, 80)
    size: tuple[int, int] | None = None


@dataclass(frozen=True, kw_only=True)
class ProcessInfo:
    """A spawned process as ``sb.processes()`` reports it."""

    #: stable id, valid from any client connected to the same sandbox
    id: str
    command: Sequence[str]
    running: bool
    #: None while running; ``128 + signal`` when a signal ended it
    exit_code: int | None
    started_at: dt.datetime | None
    pty: bool = False


@dataclass(frozen=True, kw_only=True)
class Tunnel:
    """How the caller's machine reaches one port of a sandbox (capability PORTS)."""

    #: the port inside the sandbox
    port: int
    #: a URL a plain HTTP client on the caller's machine can open
    url: str
    host: str
    host_port: int


@dataclass(frozen=True, kw_only=True)
class SnapshotInfo:
    """A saved filesystem (SPI, capability SNAPSHOTS); ``Sandbox.create(snapshot=id)`` starts from it."""

    id: str
    provider: str
    created_at: dt.datetime | None = None
    #: bookkeeping labels (session, owner), so ``gc`` can reap expired snapshots
    labels: Mapping[str, str] = field(default_factory=dict)
    #: when it may be reaped; None means never
    expires_at: dt.datetime | None = None


@dataclass(frozen=True, kw_only=True)
class NetworkEvent:
    """One connection attempt the egress saw (capability NETWORK_POLICY), for ``sb.network_log()``."""

    at: dt.datetime
    #: the domain asked for (DNS or TLS SNI or HTTP Host), or None for a raw address
    host: str | None
    #: the address and port tried, when known
    address: str | None
    port: int | None
    #: "allowed" or "denied"
    verdict: Literal["allowed", "denied"]
    reason: str = ""
