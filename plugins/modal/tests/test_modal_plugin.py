"""Registration: the entry point and the CLI command load without importing modal (no Docker needed)."""

from __future__ import annotations

import subprocess
import sys

import sandboxkit


def _fresh(code: str) -> str:
    return subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout.strip()


def test_the_provider_is_registered_through_its_entry_point() -> None:
    status = {p.name: p for p in sandboxkit.providers()}["modal"]
    assert status.ok
    assert status.plugin == "modal"


def test_listing_providers_and_building_the_cli_import_no_modal() -> None:
    code = (
        "import sys, sandboxkit\n"
        "from sandboxkit.cli import build_parser\n"
        "assert 'modal' in [p.name for p in sandboxkit.providers()]\n"
        "build_parser()\n"
        "print(sorted(m for m in sys.modules if m == 'modal' or m.startswith(('modal.', 'grpclib'))))\n"
    )
    assert _fresh(code) == "[]"


def test_the_cli_offers_the_emulator() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "sandboxkit.cli", "modal-emulator", "--help"], check=True, capture_output=True, text=True
    ).stdout
    assert "--port" in out
    assert "--image-map" in out
    assert "--gpu-mode" in out
