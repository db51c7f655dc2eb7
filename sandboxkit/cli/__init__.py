"""The ``sandboxkit`` command line.

Each command group lives in its own module with an ``add(subparsers)`` function; plugins add
theirs through the ``sandboxkit_cli_commands`` hook. Exit codes: a command's own code passes
through ``run``/``exec``; 2 is a usage error; 3 a SandboxError (its code is printed); 124 a
command killed by ``exec --timeout``; 130 an interrupt. ``--json`` output is for scripts.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from sandboxkit._errors import SandboxError
from sandboxkit._registry import registry
from sandboxkit.cli import (
    _network,
    _processes,
    _providers,
    _run,
    _sandboxes,
    _sandboxes_exec,
    _secrets,
    _snapshots,
    _volumes,
)

EXIT_USAGE = 2
EXIT_SANDBOX_ERROR = 3

#: Built-in command groups, in help order.
COMMAND_GROUPS = [
    _providers,
    _run,
    _sandboxes_exec,
    _processes,
    _sandboxes,
    _snapshots,
    _volumes,
    _secrets,
    _network,
]


def build_parser() -> argparse.ArgumentParser:
    """The full parser, with every plugin's subcommands."""
    parser = argparse.ArgumentParser(prog="sandboxkit", description="Isolated sandboxes on any provider.")
    sub = parser.add_subparsers(dest="command_name", required=True, metavar="COMMAND")
    for group in COMMAND_GROUPS:
        group.add(sub)
    registry.plugin_manager.hook.sandboxkit_cli_commands(subparsers=sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the process exit code."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.handler(args))
    except SandboxError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_SANDBOX_ERROR
    except KeyboardInterrupt:
        return 130
