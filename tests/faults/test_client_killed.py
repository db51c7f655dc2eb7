"""A client SIGKILLed mid-command: nothing outlives the sandbox's lifetime, and ``sandboxkit gc`` reaps.

The client runs in a child process that is killed with SIGKILL while a command runs. Through the
fast exec path the agent sees its stream close and kills the command at once; through plain
``docker exec`` the command runs on (Docker has no way to tie it to the client). The fast-path
sandbox is left alone to show its lifetime holds without help; the other is reaped at once by
``sandboxkit gc``, which sees that its owner process is gone.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from typing import Any

import pytest
from fault_helpers import container_pids

pytestmark = pytest.mark.docker

LIFETIME = 12

CHILD = """
import json, sys, threading
import sandboxkit
sb = sandboxkit.Sandbox.create(provider="docker", timeout={lifetime})
for _ in range(3):
    sb.execute(["true"])
threading.Thread(target=sb.execute, args=("sleep 300",), daemon=True).start()
print(json.dumps({{"id": sb.id}}), flush=True)
threading.Event().wait()
"""


def start_client(fast: bool, tag: str) -> tuple[subprocess.Popen[str], str]:
    labels = f"{os.environ['SANDBOXKIT_LABELS']},client={tag}"
    env = dict(os.environ, SANDBOXKIT_DOCKER_FAST_EXEC="1" if fast else "0", SANDBOXKIT_LABELS=labels)
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD.format(lifetime=LIFETIME)], env=env, stdout=subprocess.PIPE, text=True
    )
    assert child.stdout is not None
    line = child.stdout.readline()
    assert line, "the client process died before creating its sandbox"
    return child, json.loads(line)["id"]


def wait_for(predicate: Any, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.25)
    return bool(predicate())


def test_sigkilled_client_leaves_nothing_past_the_lifetime(docker_engine: Any) -> None:
    tag = uuid.uuid4().hex[:8]
    fast_child, fast_id = start_client(fast=True, tag=f"fast-{tag}")
    plain_child, plain_id = start_client(fast=False, tag=f"plain-{tag}")
    created = time.monotonic()
    try:
        for cid in (fast_id, plain_id):
            assert wait_for(lambda cid=cid: any("sleep 300" in p for p in container_pids(docker_engine, cid)), 10)
    finally:
        for child in (fast_child, plain_child):
            child.send_signal(signal.SIGKILL)
            child.wait()
    # the fast path's agent noticed its client is gone and killed the command
    assert wait_for(lambda: not any("sleep 300" in p for p in container_pids(docker_engine, fast_id)), 8)
    # gc reaps the other at once: its owner is gone, though its lifetime is not over
    gc = subprocess.run(
        [sys.executable, "-m", "sandboxkit.cli", "gc", "--label", f"client=plain-{tag}", "--json"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert gc.returncode == 0, gc.stderr
    assert [(row["id"], row["reason"], row["removed"]) for row in json.loads(gc.stdout)] == [
        (plain_id, "owner_gone", True)
    ]
    assert time.monotonic() - created < LIFETIME
    assert not docker_engine.api.containers(all=True, filters={"id": plain_id})
    # the fast-path one ends by itself at its lifetime
    remaining = LIFETIME + 20 - (time.monotonic() - created)
    assert wait_for(lambda: not docker_engine.api.containers(all=True, filters={"id": fast_id}), remaining), (
        f"container {fast_id[:12]} outlived its lifetime"
    )
