"""Live job: the provider against modal.com. Skipped unless real credentials are set.

Runs when MODAL_TOKEN_ID and MODAL_TOKEN_SECRET are set and MODAL_SERVER_URL is not (so it never
mistakes the emulator for Modal). GPU sandboxes cost money: they run only with
SANDBOXKIT_MODAL_LIVE_GPU=1 (optionally SANDBOXKIT_MODAL_LIVE_GPU_TYPE, default T4).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest

from sandboxkit import ErrorCode, Sandbox, SandboxError

MODAL_VARS = ("MODAL_SERVER_URL", "MODAL_TOKEN_ID", "MODAL_TOKEN_SECRET")
#: The caller's own settings, read at collection, before any fixture points the SDK at an emulator.
LIVE_ENV = {k: v for k in MODAL_VARS if (v := os.environ.get(k))}
pytestmark = pytest.mark.skipif(
    not (LIVE_ENV.get("MODAL_TOKEN_ID") and LIVE_ENV.get("MODAL_TOKEN_SECRET"))
    or bool(LIVE_ENV.get("MODAL_SERVER_URL")),
    reason="live Modal job: set MODAL_TOKEN_ID and MODAL_TOKEN_SECRET (and leave MODAL_SERVER_URL unset) to run it",
)
GPU = os.environ.get("SANDBOXKIT_MODAL_LIVE_GPU") == "1"


@pytest.fixture(scope="module", autouse=True)
def live_env() -> Iterator[None]:
    """The caller's own Modal credentials, even when an emulator fixture pointed the session elsewhere."""
    saved = {k: os.environ.get(k) for k in MODAL_VARS}
    for key in MODAL_VARS:
        value = LIVE_ENV.get(key)
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    yield
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture(scope="module")
def sb() -> Iterator[Sandbox]:
    with Sandbox.create(
        provider="modal", app="sandboxkit-live-tests", name=f"live-{uuid.uuid4().hex[:8]}", timeout=600
    ) as sandbox:
        yield sandbox


def test_lifecycle_commands_and_files(sb: Sandbox) -> None:
    r = sb.execute("echo out; echo err >&2; exit 3")
    assert (r.exit_code, r.stdout, r.stderr) == (3, "out\n", "err\n")
    assert sb.execute("cat", stdin=b"\x00\x01").stdout_bytes == b"\x00\x01"
    sb.write_file("/tmp/live/x.bin", bytes(range(256)))
    assert sb.read_file("/tmp/live/x.bin") == bytes(range(256))
    assert Sandbox.from_id(sb.id, provider="modal").execute("true").exit_code == 0
    assert Sandbox.from_name("sandboxkit-live-tests", sb.name or "", provider="modal").id == sb.id


def test_exec_timeout(sb: Sandbox) -> None:
    with pytest.raises(SandboxError) as info:
        sb.execute("sleep 60", timeout=2)
    assert info.value.code == ErrorCode.COMMAND_TIMEOUT


@pytest.mark.skipif(not GPU, reason="GPU sandboxes cost money; set SANDBOXKIT_MODAL_LIVE_GPU=1 to run them")
def test_gpu_sandbox_sees_its_gpu() -> None:
    kind = os.environ.get("SANDBOXKIT_MODAL_LIVE_GPU_TYPE", "T4")
    with Sandbox.create(provider="modal", app="sandboxkit-live-tests", gpu=kind, timeout=300) as sb:
        assert len(sb.id) == 25  # GPU sandboxes take Modal's V1 path
        assert kind.split(":")[0].upper() in sb.execute("nvidia-smi -L").stdout.upper()
