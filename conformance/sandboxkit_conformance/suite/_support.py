"""Helpers shared by the suite's test modules (asserts here are rewritten: see ``suite/__init__``)."""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass

import pytest

from sandboxkit import Capability, ErrorCode, Sandbox, SandboxError
from sandboxkit_conformance._target import ConformanceTarget

#: How far past a per-call timeout the provider may report COMMAND_TIMEOUT. The facade's own
#: safety net fires 10 s past the timeout; an error that late means the provider did not stop
#: the command itself.
TIMEOUT_SLACK = 8.0
#: How long the provider may take to make a closed or expired sandbox disappear.
SETTLE = 15.0
#: The error kinds batch file operations report (deepagents' vocabulary).
FILE_ERROR_KINDS = {"file_not_found", "permission_denied", "is_directory", "invalid_path"}


def unique(prefix: str = "sbkc") -> str:
    """A name that no other test uses."""
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


@dataclass
class Caught:
    """The SandboxError an :func:`expect_error` block raised."""

    value: SandboxError | None = None

    @property
    def error(self) -> SandboxError:
        assert self.value is not None
        return self.value


@contextlib.contextmanager
def expect_error(code: ErrorCode, what: str) -> Iterator[Caught]:
    """Assert that the block raises a SandboxError with ``code``; ``what`` says what was attempted."""
    caught = Caught()
    try:
        yield caught
    except SandboxError as exc:
        caught.value = exc
        if exc.code != code:
            pytest.fail(f"{what}: expected SandboxError {code.value}, got {exc.code.value}: {exc}")
    else:
        pytest.fail(f"{what}: expected SandboxError {code.value}, but nothing was raised")


def probe_labels() -> dict[str, str]:
    """Labels that mark the sandboxes of one test, to find them (or their absence) with ``list``."""
    return {"conformance_probe": unique("probe")}


def live_ids(target: ConformanceTarget, labels: Mapping[str, str]) -> list[str]:
    """Ids of the provider's live sandboxes carrying ``labels``."""
    return [info.id for info in Sandbox.list(target.provider, labels={**target.labels, **labels})]


def assert_nothing_left(target: ConformanceTarget, labels: Mapping[str, str], why: str) -> None:
    """With LIST declared, wait until no live sandbox carries ``labels``; fail naming the leftovers."""
    if not target.declares(Capability.LIST):
        return
    left = wait_for(lambda: not live_ids(target, labels), SETTLE)
    if not left:
        pytest.fail(f"{why}, but the provider still lists {live_ids(target, labels)} after {SETTLE:g}s")


def wait_for(predicate: Callable[[], bool], seconds: float, interval: float = 0.5) -> bool:
    """Poll ``predicate`` until it holds or ``seconds`` pass; return whether it held."""
    deadline = time.monotonic() + seconds
    while True:
        if predicate():
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(interval)


#: How long after a cancellation (or a timeout report) the command's whole tree must be gone.
KILL_WITHIN = 2.0
#: How long a heartbeat must stay still to count as dead (its beat is every 0.1 s).
STILL = 1.5


def heartbeat_command(directory: str, *, detached: bool = True) -> str:
    """A shell command whose every process beats: it, a background child and (``detached``) a setsid grandchild.

    Each bumps a counter in its own file under ``directory`` every 0.1 s; :func:`beats` reads them from a
    later command. A dead process stops beating whatever the provider's PID layout (no ``/proc`` scan).
    """
    beat = 'i=0; while :; do i=$((i+1)); echo $i > "$1"; sleep 0.1; done'
    parts = [f"mkdir -p {directory}", f"sh -c '{beat}' sh {directory}/child &"]
    if detached:
        parts.append(f"setsid sh -c '{beat}' sh {directory}/grandchild &")
    parts.append(f"i=0; while :; do i=$((i+1)); echo $i > {directory}/main; sleep 0.1; done")
    return "\n".join(parts)


def heartbeat_names(detached: bool = True) -> set[str]:
    """The files :func:`heartbeat_command` writes."""
    return {"main", "child", "grandchild"} if detached else {"main", "child"}


def beats(sandbox: Sandbox, directory: str) -> dict[str, int]:
    """The heartbeat counters under ``directory``, read by a later command."""
    script = 'for f in "$1"/*; do [ -f "$f" ] && printf "%s %s\\n" "${f##*/}" "$(cat "$f")"; done; true'
    out = sandbox.execute(["sh", "-c", script, "sh", directory], timeout=60).stdout
    return parse_beats(out)


def parse_beats(out: str) -> dict[str, int]:
    """``name count`` lines -> counters; an empty file (a process killed mid-write) counts as 0."""
    found = {}
    for line in out.splitlines():
        name, _, value = line.partition(" ")
        found[name] = int(value) if value.strip().isdigit() else 0
    return found


def wait_beating(sandbox: Sandbox, directory: str, names: set[str]) -> None:
    """Wait until every process of the heartbeat command beats (so a later stillness means something)."""
    seen: dict[str, int] = {}

    def beating() -> bool:
        seen.update(beats(sandbox, directory))
        return all(seen.get(name, 0) >= 2 for name in names)

    if not wait_for(beating, 60):
        pytest.fail(f"the heartbeat command never started all its processes {sorted(names)}: saw {seen}")


def still_beating(sandbox: Sandbox, directory: str, *, by: float) -> list[str]:
    """Names of heartbeats still moving at ``by`` (a monotonic time), watched for :data:`STILL`.

    The first window starts at once; only when it moved and started before ``by`` is a second one
    watched from ``by`` (so a prompt kill costs one window).
    Stillness needs a window: a starved survivor can only make this pass wrongly, never fail.
    """
    started = time.monotonic()
    moving = _moving(sandbox, directory, lambda: time.sleep(STILL))
    if moving and started < by:  # moving before the deadline is allowed: look again from the deadline
        time.sleep(max(0.0, by - time.monotonic()))
        moving = _moving(sandbox, directory, lambda: time.sleep(STILL))
    return moving


def _moving(sandbox: Sandbox, directory: str, wait: Callable[[], None]) -> list[str]:
    first = beats(sandbox, directory)
    wait()
    second = beats(sandbox, directory)
    return sorted(name for name, value in second.items() if value != first.get(name))


def survivors(sandbox: Sandbox, marker: str) -> list[str]:
    """Command lines of live (non-zombie) processes in the sandbox whose argv contains ``marker``.

    It scans ``/proc`` from a later command, so it sees only a provider whose commands share one
    PID namespace; the process tests use it for spawned processes, which do.
    """
    script = (
        'for p in /proc/[0-9]*; do c=$(tr "\\000" " " < "$p/cmdline" 2>/dev/null) || continue; '
        'case "$c" in *"$1"*) case "$c" in *sbkc-survivor-scan*) ;; *) echo "$c";; esac;; esac; done'
    )
    result = sandbox.execute(["sh", "-c", script, "sbkc-survivor-scan", marker], timeout=60)
    return [line for line in result.stdout.splitlines() if line.strip()]


def no_survivors(sandbox: Sandbox, marker: str, seconds: float = 10.0) -> list[str]:
    """Wait up to ``seconds`` for every process with ``marker`` to die; return the ones still alive."""
    left: list[str] = []

    def gone() -> bool:
        left[:] = survivors(sandbox, marker)
        return not left

    wait_for(gone, seconds)
    return left
