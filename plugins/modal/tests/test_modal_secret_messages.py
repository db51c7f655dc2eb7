"""Secret values never reach error messages (Modal through the emulator): a command that prints its
secrets and fails raises COMMAND_FAILED showing none of them; ``.result`` keeps them.

The client runs in its own process, which reads the secret's values from the local store the
emulator serves (it never stored them itself).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
from sandboxkit_conformance import MakeSecret

CLIENT = Path(__file__).resolve().parents[3] / "tests" / "security" / "secret_client.py"
pytestmark = pytest.mark.usefixtures("modal_env")


def test_a_failing_command_that_prints_its_secrets_shows_none_in_the_error(emulator_secret: MakeSecret) -> None:
    value = f"s3cr3t-{uuid.uuid4().hex}"
    name = emulator_secret({"API_TOKEN": value})
    per_call = f"percall-{uuid.uuid4().hex}"
    done = subprocess.run(
        [sys.executable, str(CLIENT), "modal", name, per_call],
        capture_output=True,
        text=True,
        timeout=180,
        env=os.environ,
    )
    assert done.returncode == 0, done.stderr
    got: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    assert got["code"] == "COMMAND_FAILED"
    assert value not in got["shown"] and per_call not in got["shown"] and "API_TOKEN=***" in got["shown"]
    assert f"API_TOKEN={value}" in got["raw"] and f"PER_CALL={per_call}" in got["raw"]
