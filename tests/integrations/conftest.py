"""Integration tests run async tests the way pytest-asyncio's ``asyncio_mode = auto`` would, here only.

langchain-tests' sandbox suite and inspect's self-check ship unmarked ``async def`` tests that
expect auto mode; marking them in this directory keeps the rest of the repo in strict mode. They
share one event loop per module, so module-scoped async fixtures (one sandbox per module) work.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Generator
from pathlib import Path
from typing import Any

import pytest

HERE = Path(__file__).parent


@pytest.hookimpl(hookwrapper=True, trylast=True)
def pytest_pycollect_makeitem(collector: pytest.Collector, name: str, obj: object) -> Generator[None, Any, None]:
    outcome = yield
    if not Path(str(collector.path)).is_relative_to(HERE) or not inspect.iscoroutinefunction(obj):
        return
    items = outcome.get_result()
    for item in items if isinstance(items, list) else [items]:
        if isinstance(item, pytest.Function) and item.get_closest_marker("asyncio") is None:
            item.add_marker(pytest.mark.asyncio(loop_scope="module"))


MODAL_VARS = ("MODAL_SERVER_URL", "MODAL_TOKEN_ID", "MODAL_TOKEN_SECRET")


@pytest.fixture(scope="session")
def modal_env(docker_engine: object, tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> None:
    """Point provider "modal" (the real modal SDK) at the project's Docker-backed Modal emulator.

    An emulator this session already runs (MODAL_SERVER_URL set, e.g. by the Modal provider's own
    fixture) is reused; otherwise one is started and kept until pytest ends, as reapers at session
    end still need it.
    """
    if os.environ.get("MODAL_SERVER_URL", "").startswith("http://127.0.0.1:"):
        return
    os.environ.setdefault("MODAL_CONFIG_PATH", str(tmp_path_factory.mktemp("modal-config") / "none.toml"))
    from sandboxkit_modal.emulator import EmulatorProcess

    log = tmp_path_factory.mktemp("modal-emulator") / "emulator.log"
    try:
        emulator = EmulatorProcess(log=log)
    except RuntimeError as exc:
        pytest.fail(str(exc), pytrace=False)
    saved = {key: os.environ.get(key) for key in MODAL_VARS}
    os.environ.update(emulator.env)

    def stop() -> None:
        emulator.stop()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value

    request.config.add_cleanup(stop)
