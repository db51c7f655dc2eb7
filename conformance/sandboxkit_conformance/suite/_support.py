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


def survivors(sandbox: Sandbox, marker: str) -> list[str]:
    """Command lines of live (non-zombie) processes in the sandbox whose argv contains ``marker``."""
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
