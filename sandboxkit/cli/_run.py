"""``sandboxkit run``: create, run one command with live output, exit with its code, clean up."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sandboxkit._sync_sandbox import Sandbox


def add(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    r = sub.add_parser("run", help="create a sandbox, run one command in it, print its output, remove it")
    r.add_argument("--provider", help="provider name (default: $SANDBOXKIT_PROVIDER, else docker)")
    r.add_argument("--image", help="image (default: the provider's)")
    r.add_argument("--timeout", type=float, help="sandbox lifetime in seconds")
    r.add_argument("command", nargs=argparse.REMAINDER, help="-- CMD [ARGS...]")
    r.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from sandboxkit._sync_sandbox import Sandbox

    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        print("error: give a command after --, e.g. sandboxkit run -- echo hi", file=sys.stderr)
        return 2
    options: dict[str, object] = {}
    if args.image:
        options["image"] = args.image
    if args.timeout:
        options["timeout"] = args.timeout
    with Sandbox.create(args.provider, **options) as sandbox:
        return print_live(sandbox, command_argv(command))


def command_argv(command: list[str]) -> str | list[str]:
    """One word with spaces is a shell line (`run -- "ls | wc -l"`); several words are argv."""
    return command[0] if len(command) == 1 and " " in command[0] else command


def print_live(sandbox: Sandbox, argv: str | list[str], **options: Any) -> int:
    """Run ``argv``, copying its stdout and stderr to ours as they come; its exit code."""
    stream = sandbox.stream(argv, **options)
    for chunk in stream:
        out = sys.stdout if chunk.stream == "stdout" else sys.stderr
        out.buffer.write(chunk.data)
        out.flush()
    assert stream.result is not None
    return stream.result.exit_code
