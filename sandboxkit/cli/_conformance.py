"""``sandboxkit conformance``: run the conformance suite against a provider (needs sandboxkit-conformance)."""

from __future__ import annotations

import argparse
import json
import sys


def add(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
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
    p.add_argument("pytest_args", nargs=argparse.REMAINDER, help="-- extra pytest arguments")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    try:
        from sandboxkit_conformance.runner import run_suite
    except ImportError:
        print(
            "error: the conformance suite is not installed; pip install 'sandboxkit[conformance]' "
            "(or sandboxkit-conformance)",
            file=sys.stderr,
        )
        return 2
    options = None
    if args.options:
        try:
            options = json.loads(args.options)
        except json.JSONDecodeError as exc:
            print(f"error: --options is not valid JSON: {exc}", file=sys.stderr)
            return 2
        if not isinstance(options, dict):
            print("error: --options must be a JSON object", file=sys.stderr)
            return 2
    from sandboxkit._sync_sandbox import Sandbox

    _ = Sandbox(args.provider).capabilities  # PROVIDER_NOT_FOUND / PROVIDER_UNAVAILABLE before pytest starts
    extra = args.pytest_args[1:] if args.pytest_args[:1] == ["--"] else args.pytest_args
    return run_suite(args.provider, report=args.report, create_options=options, extra=extra)
