"""Fixtures for the Modal provider's tests: a Modal emulator subprocess, and env pointing the SDK at it.

The emulator is the project's own (``python -m sandboxkit_modal.emulator``); its sandboxes are
Docker containers made through the Docker provider, labelled with this session's label (it
inherits $SANDBOXKIT_LABELS), so the root conftest reaps whatever a failed test leaves.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator

import pytest
from sandboxkit_modal.emulator import EmulatorProcess

# modal reads its config file once, at import: keep a developer's ~/.modal.toml out of the tests
os.environ.setdefault("MODAL_CONFIG_PATH", os.path.join(tempfile.gettempdir(), "sandboxkit-no-modal-config.toml"))

MODAL_VARS = ("MODAL_SERVER_URL", "MODAL_TOKEN_ID", "MODAL_TOKEN_SECRET")


@pytest.fixture(scope="session")
def modal_emulator(docker_engine: object, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """A running emulator for the session: its MODAL_SERVER_URL and token pair."""
    log = tmp_path_factory.mktemp("modal-emulator") / "emulator.log"
    try:
        emulator = EmulatorProcess(log=log)
    except RuntimeError as exc:
        pytest.fail(str(exc), pytrace=False)
    yield emulator.env
    code = emulator.stop()
    assert code == 0, f"the Modal emulator exited with {code}; its log:\n{log.read_text()}"


@pytest.fixture(scope="session")
def modal_env(modal_emulator: dict[str, str]) -> Iterator[dict[str, str]]:
    """Point the modal SDK (and so provider "modal") at the emulator for the rest of the session."""
    saved = {k: os.environ.get(k) for k in MODAL_VARS}
    os.environ.update(modal_emulator)
    yield modal_emulator
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
