"""``timeout`` holds against root inside the sandbox: the warden removes it from outside.

Root stops PID 1's ``sleep <timeout>`` (the container's own timer) and kills every other process
it can see; the sandbox must still be gone within 10 s of its deadline, with the client alive
and with the client SIGKILLed first.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from typing import Any

import pytest
from lifetime_attack import LAUNCH, exists, expiry, timer_stopped, wait_for

from sandboxkit import Sandbox

pytestmark = pytest.mark.docker
#: long enough for the attack to be carried out before the deadline on a loaded machine
TIMEOUT = 15
#: how far past its deadline a sandbox may live (the issue's bound)
BOUND = 10

CLIENT = f"""
import sys
from sandboxkit import Sandbox
sb = Sandbox.create(timeout={TIMEOUT})
sb.execute({LAUNCH!r})
print(sb.id, flush=True)
sys.stdin.read()
"""


def test_a_stopped_timer_does_not_keep_the_sandbox_alive(docker_engine: Any) -> None:
    sb = Sandbox.create(timeout=TIMEOUT)
    try:
        deadline = expiry(docker_engine, sb.id)
        sb.execute(LAUNCH)
        assert wait_for(lambda: timer_stopped(docker_engine, sb.id, "sleep "), deadline), (
            "the attack did not stop the timer in time"
        )
        assert wait_for(lambda: not exists(docker_engine, sb.id), deadline + BOUND), (
            f"the sandbox outlived its timeout of {TIMEOUT}s by more than {BOUND}s"
        )
    finally:
        sb.close()


def test_a_stopped_timer_and_a_sigkilled_client(docker_engine: Any) -> None:
    client = subprocess.Popen(
        [sys.executable, "-c", CLIENT], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=os.environ
    )
    try:
        assert client.stdout is not None
        sandbox_id = client.stdout.readline().strip()
        assert sandbox_id, "the client died before creating its sandbox"
        deadline = expiry(docker_engine, sandbox_id)
        assert wait_for(lambda: timer_stopped(docker_engine, sandbox_id, "sleep "), deadline)
    finally:
        client.send_signal(signal.SIGKILL)
        client.wait(timeout=10)
    try:
        assert wait_for(lambda: not exists(docker_engine, sandbox_id), deadline + BOUND), (
            f"the sandbox of a SIGKILLed client outlived its timeout of {TIMEOUT}s by more than {BOUND}s"
        )
    finally:
        if exists(docker_engine, sandbox_id):
            docker_engine.api.remove_container(sandbox_id, force=True)
