"""Secret values never reach error messages (Docker): ``env; exit 3`` with ``check=True`` prints every
secret, and COMMAND_FAILED's str, repr, message, args and traceback show none of them, in the
process that created the sandbox and in one that only reconnected to it; ``.result`` keeps them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sandboxkit import Sandbox
from sandboxkit.secrets import create_secret, delete_secret

pytestmark = pytest.mark.docker
CLIENT = str(Path(__file__).with_name("secret_client.py"))


@pytest.fixture
def secret(docker_engine: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, str]]:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    name, value = f"sbk-{uuid.uuid4().hex[:8]}", f"s3cr3t-{uuid.uuid4().hex}"
    create_secret(name, {"API_TOKEN": value})
    yield name, value
    delete_secret(name)


def run_client(*args: str) -> dict[str, Any]:
    done = subprocess.run([sys.executable, CLIENT, *args], capture_output=True, text=True, timeout=180, env=os.environ)
    assert done.returncode == 0, done.stderr
    found: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return found


def test_a_failing_command_that_prints_its_secrets_shows_none_in_the_error(secret: tuple[str, str]) -> None:
    name, value = secret
    per_call = f"percall-{uuid.uuid4().hex}"
    got = run_client("docker", name, per_call)
    assert got["code"] == "COMMAND_FAILED"
    assert value not in got["shown"] and per_call not in got["shown"] and "API_TOKEN=***" in got["shown"]
    assert f"API_TOKEN={value}" in got["raw"] and f"PER_CALL={per_call}" in got["raw"]


def test_a_reconnecting_process_redacts_them_too(secret: tuple[str, str]) -> None:
    name, value = secret
    with Sandbox.create(secrets=[name], timeout=120) as sb:
        got = run_client("docker", name, "unused-value", sb.id)
    assert got["code"] == "COMMAND_FAILED"
    assert value not in got["shown"] and "API_TOKEN=***" in got["shown"]
    assert f"API_TOKEN={value}" in got["raw"]
