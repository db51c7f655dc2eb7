"""Live job: the conformance suite against modal.com. Skipped unless real credentials are set.

Runs when MODAL_TOKEN_ID and MODAL_TOKEN_SECRET are set and MODAL_SERVER_URL is not (so it never
mistakes the emulator for Modal). The suite runs in a child pytest (``live/``), isolated from this
session's emulator. GPU sandboxes cost money: they run only with SANDBOXKIT_MODAL_LIVE_GPU=1
(SANDBOXKIT_MODAL_LIVE_GPU_TYPE picks the kind, default T4).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

MODAL_VARS = ("MODAL_SERVER_URL", "MODAL_TOKEN_ID", "MODAL_TOKEN_SECRET")
#: The caller's own settings, read at collection, before any fixture points the SDK at an emulator.
LIVE_ENV = {k: v for k in MODAL_VARS if (v := os.environ.get(k))}
SUITE = Path(__file__).parent / "live" / "suite_live.py"


@pytest.mark.timeout(3600)
@pytest.mark.skipif(
    not (LIVE_ENV.get("MODAL_TOKEN_ID") and LIVE_ENV.get("MODAL_TOKEN_SECRET")) or "MODAL_SERVER_URL" in LIVE_ENV,
    reason="live Modal job: set MODAL_TOKEN_ID and MODAL_TOKEN_SECRET (and leave MODAL_SERVER_URL unset) to run it",
)
def test_conformance_suite_against_modal_com(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in MODAL_VARS}
    env.update(LIVE_ENV)
    report = tmp_path / "modal-live-conformance.json"
    args = [sys.executable, "-m", "pytest", str(SUITE), "-q", "--conformance-report", str(report)]
    if os.environ.get("SANDBOXKIT_MODAL_LIVE_GPU") != "1":
        args += ["-k", "not TestGpu"]  # GPUs cost money: opt in with SANDBOXKIT_MODAL_LIVE_GPU=1
    done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=3500, cwd=SUITE.parents[4])
    assert done.returncode == 0, f"the conformance suite failed against modal.com:\n{done.stdout[-8000:]}"
    assert report.is_file()
