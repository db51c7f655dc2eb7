"""A Modal sandbox (through the emulator) holds its lifetime against root inside it, even with the
emulator SIGKILLed: its container is a Docker-provider sandbox, so the Docker warden ends it.

The emulator enforces ``timeout`` itself while it lives; killed, it leaves a container whose
``sleep`` (the container's own timer, ``timeout`` plus the emulator's slack) the code inside has
stopped. The warden removes it within 10 s of that deadline.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from sandboxkit_modal.emulator import EmulatorProcess

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "tests" / "security"))  # the shared attack
from lifetime_attack import LAUNCH, exists, expiry, timer_stopped, wait_for  # type: ignore[import-not-found]

#: long enough for the attack to be carried out before the emulator's own deadline on a loaded machine
TIMEOUT = 20
BOUND = 10

CLIENT = f"""
import sys
from sandboxkit import Sandbox
sb = Sandbox.create(provider="modal", timeout={TIMEOUT})
sb.execute({LAUNCH!r})
print(sb.id, flush=True)
sys.stdin.read()
"""


def test_a_stopped_timer_and_a_sigkilled_emulator(docker_engine: Any, tmp_path: Path) -> None:
    tag = uuid.uuid4().hex[:8]
    labels = f"{os.environ['SANDBOXKIT_LABELS']},lifetime={tag}"
    started = time.monotonic()
    emulator = EmulatorProcess(
        log=tmp_path / "emulator.log", env={"SANDBOXKIT_LABELS": labels, "XDG_CONFIG_HOME": str(tmp_path)}
    )
    client = subprocess.Popen(
        [sys.executable, "-c", CLIENT],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, **emulator.env},
    )
    container = ""
    try:
        assert client.stdout is not None
        assert client.stdout.readline().strip(), "the client died before creating its sandbox"
        (row,) = docker_engine.api.containers(filters={"label": f"sandboxkit.label.lifetime={tag}"})
        container = row["Id"]
        deadline = expiry(docker_engine, container)  # the emulator's timeout plus its slack
        assert wait_for(lambda: timer_stopped(docker_engine, container, "sleep "), started + TIMEOUT)
    finally:
        for proc in (client, emulator.proc):
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=10)
    try:
        assert wait_for(lambda: not exists(docker_engine, container), deadline + BOUND), (
            f"the container of a Modal sandbox outlived its deadline by more than {BOUND}s with the emulator dead"
        )
    finally:
        if container and exists(docker_engine, container):
            docker_engine.api.remove_container(container, force=True)
