"""An OOM and a fork bomb in one sandbox leave its neighbour untouched (and the sandbox usable)."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

import sandboxkit
from sandboxkit import ErrorCode, SandboxError

pytestmark = pytest.mark.docker


def test_oom_and_fork_bomb_stay_in_their_sandbox(docker_engine: Any) -> None:
    with (
        sandboxkit.Sandbox.create(
            provider="docker", timeout=300, memory_mib=300, provider_options={"pids_limit": 64}
        ) as noisy,
        sandboxkit.Sandbox.create(provider="docker", timeout=300) as neighbour,
    ):
        for sb in (noisy, neighbour):
            for _ in range(3):
                sb.execute(["true"])  # both on the fast path: the agents must survive too
        seen: list[Any] = []
        steady = threading.Thread(
            target=lambda: seen.append(neighbour.execute("for i in $(seq 1 20); do echo $i; sleep 0.4; done"))
        )
        steady.start()

        with pytest.raises(SandboxError) as err:  # the memory limit kills the hog, not the sandbox
            noisy.execute("python3 -c 'b = bytearray(1 << 30); print(len(b))'", timeout=60)
        assert err.value.code == ErrorCode.RESOURCE_LIMIT_EXCEEDED
        assert noisy.execute("echo still here").stdout == "still here\n"

        with pytest.raises(SandboxError) as err:  # the pids limit holds the bomb; the timeout ends it
            noisy.execute("f() { f | f & }; f; exec sleep 30", timeout=5)  # exec: no fork needed
        # or, when the bomb took the last pid before the command's own shell forked, that shell fails
        # first and the command is reported as stopped by the pids limit; either way the bomb is gone
        assert err.value.code in (ErrorCode.COMMAND_TIMEOUT, ErrorCode.RESOURCE_LIMIT_EXCEEDED), err.value
        assert _recovers(noisy), "the sandbox stayed at its process limit: the bomb outlived its command"
        left = noisy.execute("ps -e --no-headers | wc -l").stdout.strip()
        assert int(left) < 10, f"{left} processes left in the sandbox after the bomb was killed"

        steady.join(30)
        (result,) = seen
        assert result.exit_code == 0
        assert result.stdout.split() == [str(i) for i in range(1, 21)]
        assert neighbour.execute("echo fine").stdout == "fine\n"


def _recovers(sandbox: sandboxkit.Sandbox, seconds: float = 30.0) -> bool:
    """Whether a command runs again within ``seconds`` (the killed bomb's pids are freed as its
    members are reaped, which on a loaded machine can trail the kill by a moment); bounded."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            return sandbox.execute("echo still here").stdout == "still here\n"
        except SandboxError as exc:
            if exc.code is not ErrorCode.RESOURCE_LIMIT_EXCEEDED or time.monotonic() > deadline:
                return False
            time.sleep(0.5)
