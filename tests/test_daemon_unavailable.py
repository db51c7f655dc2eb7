"""An engine that is absent or hangs gives PROVIDER_UNAVAILABLE quickly, not a long hang."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

SCRIPT = """
import time
from sandboxkit import Sandbox, SandboxError
started = time.monotonic()
try:
    Sandbox.create(timeout=30)
except SandboxError as exc:
    print(exc.code.value, round(time.monotonic() - started, 2))
    print(exc.message)
"""


def _create_with(docker_host: str) -> tuple[str, float, str]:
    env = {**os.environ, "DOCKER_HOST": docker_host}
    out = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, env=env, timeout=60)
    first, _, message = out.stdout.partition("\n")
    code, seconds = first.split()
    return code, float(seconds), message


def test_no_engine_at_all(tmp_path: Path) -> None:
    code, seconds, message = _create_with(f"unix://{tmp_path}/no-engine.sock")
    assert code == "PROVIDER_UNAVAILABLE"
    assert seconds < 2
    assert "start it" in message
    assert "DOCKER_HOST" in message


@pytest.fixture
def silent_engine(tmp_path: Path) -> Iterator[str]:
    """A unix socket that accepts connections and never answers: a hung engine (fault injection)."""
    path = str(tmp_path / "hung.sock")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen(16)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"unix://{path}"
    stop.set()
    thread.join()
    for conn in held:
        conn.close()
    server.close()


def test_engine_that_never_answers(silent_engine: str) -> None:
    started = time.monotonic()
    code, seconds, _ = _create_with(silent_engine)
    assert code == "PROVIDER_UNAVAILABLE"
    assert seconds < 4.0, seconds  # the client gives the engine 2 s to answer
    assert time.monotonic() - started < 30
