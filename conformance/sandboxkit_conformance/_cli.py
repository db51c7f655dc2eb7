"""``sandboxkit conformance``: added to the CLI through the ``sandboxkit_cli_commands`` hook.

This module is the package's ``sandboxkit`` entry point, as a provider plugin's is. Importing it
must stay cheap: it imports neither pytest nor the suite until the command runs.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from sandboxkit.spi import hookimpl


@hookimpl
def sandboxkit_cli_commands(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """``sandboxkit conformance --provider NAME``."""
    p = subparsers.add_parser(
        "conformance",
        help="run the conformance suite against a provider",
        description="Run the sandboxkit conformance suite against a registered provider. "
        "Arguments after -- go to pytest (e.g. -- -k TestExecute -x).",
    )
    p.add_argument("--provider", required=True, help="registered provider name (see `sandboxkit providers`)")
    p.add_argument("--report", metavar="PATH", help="write the capability matrix and per-test outcomes as JSON")
    p.add_argument(
        "--options",
        metavar="JSON",
        help='Sandbox.create options for every suite sandbox, e.g. \'{"image": "python:3.12-slim"}\'',
    )
    p.add_argument(
        "--known-failures",
        metavar="FILE",
        help='known failures as a JSON object {"TestClass::test_name": "reason"}; they run as strict xfail',
    )
    p.add_argument("pytest_args", nargs=argparse.REMAINDER, help="-- extra pytest arguments")
    p.set_defaults(handler=run)


def _json_object(raw: str, what: str) -> dict[str, Any]:
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{what} is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise ValueError(f"{what} must be a JSON object")
    return value


def run(args: argparse.Namespace) -> int:
    """Check the arguments and the provider, then run the suite in a child pytest."""
    from sandboxkit import Sandbox
    from sandboxkit_conformance.runner import run_suite

    try:
        options = _json_object(args.options, "--options") if args.options else None
        if args.known_failures:
            path = Path(args.known_failures)
            if not path.is_file():
                raise ValueError(f"--known-failures: no such file {str(path)!r}")
            _json_object(path.read_text(), f"--known-failures {str(path)!r}")
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    _ = Sandbox(args.provider).capabilities  # PROVIDER_NOT_FOUND / PROVIDER_UNAVAILABLE before pytest starts
    extra = args.pytest_args[1:] if args.pytest_args[:1] == ["--"] else args.pytest_args
    return run_suite(
        args.provider, report=args.report, create_options=options, known_failures=args.known_failures, extra=extra
    )
