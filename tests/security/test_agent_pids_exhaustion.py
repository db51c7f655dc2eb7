"""A sandbox at its process limit says so (issue #11, item 5, detection).

A background fork bomb (one that never dies out) holds every pid slot of its sandbox; each later
command that fails because it could not start a process must raise RESOURCE_LIMIT_EXCEEDED (with
its result attached, as an OOM kill does), never return a silent exit 126.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

import sandboxkit
from sandboxkit import ErrorCode, SandboxError

pytestmark = pytest.mark.docker

#: A fork bomb that never dies out: every child sleeps, the parent retries every failed fork.
BOMB = (
    "nohup python3 -c 'import os, time\nwhile True:\n try:\n  os.fork() or (time.sleep(1000), os._exit(0))\n"
    " except OSError:\n  time.sleep(0.01)' >/dev/null 2>&1 &"
)


@pytest.fixture
def small(docker_engine: Any) -> Iterator[sandboxkit.Sandbox]:
    """A default sandbox with a small pids limit (the bomb fills it at once and spares the host)."""
    options = {"pull": "never", "pids_limit": 64}
    with sandboxkit.Sandbox.create(provider="docker", timeout=300, cpu=1, provider_options=options) as sb:
        yield sb


@pytest.mark.parametrize("path", ["agent", "docker exec"])
def test_commands_failing_at_the_pids_limit_report_it(small: sandboxkit.Sandbox, path: str) -> None:
    if path == "agent":
        for _ in range(3):
            small.execute(["true"])
        assert small.handle.fast.mux is not None  # type: ignore[attr-defined]
    else:
        small.handle.fast.disabled = "switched off by the test"  # type: ignore[attr-defined]
    small.execute(BOMB)  # returns at once; the bomb fills the pid slots behind it
    reported = 0
    for _ in range(10):
        try:
            r = small.execute("echo hi; ls / >/dev/null; echo there", timeout=30)
        except SandboxError as exc:
            assert exc.code == ErrorCode.RESOURCE_LIMIT_EXCEEDED, exc
            assert "process limit" in exc.message
            assert exc.result is not None
            assert exc.result.exit_code != 0
            reported += 1
            continue
        assert (r.exit_code, r.stdout) == (0, "hi\nthere\n"), f"a silent failure: {r!r}"
    assert reported >= 1, "no command ever met the limit: the bomb did not hold it"
