"""Run the suite against a named provider without writing any test files (``sandboxkit conformance``)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any


def suite_dir() -> Path:
    """Where the suite's test modules (and its own pytest.ini) live."""
    from sandboxkit_conformance import suite

    return Path(suite.__file__).parent


def pytest_args(
    provider: str,
    *,
    report: str | None = None,
    create_options: Mapping[str, Any] | None = None,
    known_failures: str | None = None,
    extra: Sequence[str] = (),
) -> list[str]:
    """The pytest command line that runs the whole suite against ``provider``."""
    args = [str(suite_dir()), "-p", "sandboxkit_conformance", "--sandboxkit-provider", provider]
    if create_options:
        args += ["--sandboxkit-create-options", json.dumps(dict(create_options))]
    if known_failures:
        args += ["--sandboxkit-known-failures", known_failures]
    if report:
        args += ["--conformance-report", report]
    return [*args, *extra]


def run_suite(
    provider: str,
    *,
    report: str | None = None,
    create_options: Mapping[str, Any] | None = None,
    known_failures: str | None = None,
    extra: Sequence[str] = (),
) -> int:
    """Run the suite in a child pytest process (a clean interpreter: nothing imported before pytest starts).

    Returns pytest's exit code. Ctrl+C reaches the child too, which reaps its sandboxes before it exits.
    """
    args = pytest_args(
        provider, report=report, create_options=create_options, known_failures=known_failures, extra=extra
    )
    try:
        return subprocess.call([sys.executable, "-m", "pytest", *args])
    except KeyboardInterrupt:
        return 130
