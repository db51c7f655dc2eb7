"""Integration tests run async tests the way pytest-asyncio's ``asyncio_mode = auto`` would, here only.

langchain-tests' sandbox suite and inspect's self-check ship unmarked ``async def`` tests that
expect auto mode; marking them in this directory keeps the rest of the repo in strict mode. They
share one event loop per module, so module-scoped async fixtures (one sandbox per module) work.
"""

from __future__ import annotations

import inspect
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
