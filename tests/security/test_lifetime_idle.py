"""``idle_timeout`` holds against root inside the sandbox: the warden removes it from outside.

Root stops the in-container idle watchdog and kills every other process it can see. The warden
learns of commands only from clients (never from the sandbox), so the sandbox must be gone within
10 s of ``idle_timeout`` after its last command: with the client alive and idle, and with the
client SIGKILLed in the middle of a command.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from typing import Any

import pytest
from lifetime_attack import LAUNCH, exists, timer_stopped, wait_for

from sandboxkit import Sandbox

pytestmark = pytest.mark.docker
#: long enough for the attack to be carried out before the deadline on a loaded machine
IDLE = 8
#: how far past its deadline a sandbox may live (the issue's bound)
BOUND = 10
WATCHDOG = "sh -c life="

CLIENT = f"""
import sys, threading, time
from sandboxkit import Sandbox
sb = Sandbox.create(timeout=300, idle_timeout={IDLE})
sb.execute({LAUNCH!r})
threading.Thread(target=sb.execute, args=("sleep 0.5; sleep 300",), daemon=True).start()
time.sleep(0.2)
print(sb.id, flush=True)
sys.stdin.read()
"""


def test_a_stopped_watchdog_does_not_keep_an_idle_sandbox_alive(docker_engine: Any) -> None:
    with Sandbox.create(timeout=300, idle_timeout=IDLE) as sb:
        started = time.monotonic()
        assert sb.execute("sleep 10; echo busy", timeout=60).stdout == "busy\n"  # busy past idle_timeout: kept
        assert time.monotonic() - started >= 10
        sb.execute(LAUNCH)
        last = time.monotonic()
        assert wait_for(lambda: timer_stopped(docker_engine, sb.id, WATCHDOG), last + IDLE), (
            "the attack did not stop the watchdog in time"
        )
        assert wait_for(lambda: not exists(docker_engine, sb.id), last + IDLE + BOUND), (
            f"an idle sandbox outlived its idle_timeout of {IDLE}s by more than {BOUND}s"
        )


def test_a_stopped_watchdog_and_a_client_sigkilled_mid_command(docker_engine: Any) -> None:
    client = subprocess.Popen(
        [sys.executable, "-c", CLIENT], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=os.environ
    )
    try:
        assert client.stdout is not None
        sandbox_id = client.stdout.readline().strip()
        assert sandbox_id, "the client died before creating its sandbox"
    finally:
        client.send_signal(signal.SIGKILL)
        client.wait(timeout=10)
    killed = time.monotonic()
    try:
        assert wait_for(lambda: timer_stopped(docker_engine, sandbox_id, WATCHDOG), killed + IDLE)
        assert wait_for(lambda: not exists(docker_engine, sandbox_id), killed + IDLE + BOUND), (
            f"the sandbox of a SIGKILLed client outlived its idle_timeout of {IDLE}s by more than {BOUND}s"
        )
    finally:
        if exists(docker_engine, sandbox_id):
            docker_engine.api.remove_container(sandbox_id, force=True)
