"""``sandboxkit create`` and ``sandboxkit exec``: a sandbox that outlives the command, driven from scripts.

    id=$(sandboxkit create --image python:3.12-slim --timeout 3600)
    sandboxkit exec "$id" -- python -c 'print(6 * 7)'        # exits with the command's code
    sandboxkit exec --json "$id" -- ls /                      # {"exit_code": 0, "stdout": ..., ...}

Exit codes: ``create`` 0; ``exec`` the command's own exit code (with ``--json``: 0 once the command
ran, its code is in the JSON); 124 when ``--timeout`` killed the command; 2 a usage error; 3 a
SandboxError (its code on stderr, and with ``--json`` an ``{"error": {"code", "message"}}`` object on
stdout); 130 interrupted.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any, TextIO

from sandboxkit._errors import CommandTimeoutError, ErrorCode, SandboxError
from sandboxkit.cli._run import command_argv, print_live

EXIT_TIMEOUT = 124
EXIT_SANDBOX_ERROR = 3


def add(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    create = sub.add_parser("create", help="create a sandbox that keeps running; prints its id")
    create.add_argument("--provider", help="provider name (default: $SANDBOXKIT_PROVIDER, else docker)")
    create.add_argument("--image", help="image (default: the provider's)")
    create.add_argument("--timeout", type=float, help="lifetime in seconds (default 300)")
    create.add_argument("--workdir", help="working directory of commands")
    create.add_argument("--cpu", type=float, help="CPU cores")
    create.add_argument("--memory-mib", type=int, help="memory limit in MiB")
    create.add_argument("--gpu", help="GPU, e.g. T4 or H100:2")
    create.add_argument("--name", help="name, unique per app")
    create.add_argument("--app", help="app the sandbox belongs to (default: sandboxkit)")
    create.add_argument("--env", action="append", metavar="KEY=VALUE", default=[], help="environment (repeatable)")
    create.add_argument("--tag", action="append", metavar="KEY=VALUE", default=[], help="tag (repeatable)")
    create.add_argument("--secret", action="append", metavar="NAME", default=[], help="named secret (repeatable)")
    create.add_argument("--volume", action="append", metavar="PATH=NAME", default=[], help="mount a named volume")
    create.add_argument("--block-network", action="store_true", help="no network access")
    create.add_argument(
        "--port", action="append", type=int, default=[], help="expose this port (repeatable); its URL goes to stderr"
    )
    create.add_argument("--snapshot", metavar="SNAP", help="start from this snapshot (`sandboxkit snapshot ls`)")
    create.add_argument("--json", action="store_true", help='print {"id", "provider", "name", "app", "urls"}')
    create.set_defaults(handler=run_create)

    exe = sub.add_parser("exec", help="run a command in a running sandbox; exits with its exit code")
    exe.add_argument("--provider", help="provider of the sandbox (default: $SANDBOXKIT_PROVIDER, else docker)")
    exe.add_argument("--cwd", help="working directory")
    exe.add_argument("--env", action="append", metavar="KEY=VALUE", default=[], help="environment (repeatable)")
    exe.add_argument("--user", help="user name or uid to run as")
    exe.add_argument("--timeout", type=float, help="kill the command (and its children) after this many seconds")
    exe.add_argument("--stdin", action="store_true", help="pass this program's standard input to the command")
    exe.add_argument("--json", action="store_true", help="print the result as JSON instead of streaming output")
    exe.add_argument(
        "target",
        nargs=argparse.REMAINDER,
        metavar="ID -- CMD [ARGS...]",
        help="sandbox id (from `sandboxkit create`), then the command; one argument with spaces is a shell line",
    )
    exe.set_defaults(handler=run_exec, parser=exe)


def run_create(args: argparse.Namespace) -> int:
    from sandboxkit import Sandbox

    options: dict[str, Any] = {
        key: value
        for key, value in {
            "image": args.image,
            "timeout": args.timeout,
            "workdir": args.workdir,
            "cpu": args.cpu,
            "memory_mib": args.memory_mib,
            "gpu": args.gpu,
            "name": args.name,
            "app": args.app,
            "snapshot": args.snapshot,
        }.items()
        if value is not None
    }
    try:
        options |= {
            "env": _pairs(args.env, "--env"),
            "tags": _pairs(args.tag, "--tag"),
            "volumes": _pairs(args.volume, "--volume"),
            "secrets": list(args.secret),
        }
        if args.block_network:
            options["block_network"] = True
        if args.port:
            options["ports"] = list(args.port)
        # owned by whoever runs the CLI, not by this process: `sandboxkit gc` must not reap it when we exit
        options["labels"] = {"owner": "cli"}
        with progress(f"creating a sandbox on {args.provider or 'the default provider'}", quiet=args.json):
            sandbox = Sandbox.create(args.provider, **options)
    except SandboxError as exc:
        return _fail(exc, args.json)
    sandbox.detach()  # it must outlive this process
    try:
        urls = {str(port): sandbox.url(port) for port in args.port}
    except SandboxError as exc:
        return _fail(exc, args.json)
    if args.json:
        print(
            json.dumps(
                {"id": sandbox.id, "provider": sandbox.provider, "name": sandbox.name, "app": sandbox.app, "urls": urls}
            )
        )
    else:
        print(sandbox.id)  # alone on stdout, for id=$(sandboxkit create ...)
        for port, url in urls.items():
            print(f"port {port}: {url}", file=sys.stderr)
    return 0


def run_exec(args: argparse.Namespace) -> int:
    from sandboxkit._sync_sandbox import Sandbox

    rest: list[str] = list(args.target)
    if rest[:1] == ["--"]:
        rest = rest[1:]
    if len(rest) < 2:
        print("error: give a sandbox id and a command, e.g. sandboxkit exec ID -- echo hi", file=sys.stderr)
        return 2
    sandbox_id, command = rest[0], rest[1:]
    if "--" in command:  # options written after the id: `exec ID --json -- cmd`
        cut = command.index("--")
        args.parser.parse_args(command[:cut], namespace=args)
        command = command[cut + 1 :]
    if not command:
        print("error: give a command after --, e.g. sandboxkit exec ID -- echo hi", file=sys.stderr)
        return 2
    argv = command_argv(command)
    try:
        options: dict[str, Any] = {
            "cwd": args.cwd,
            "env": _pairs(args.env, "--env"),
            "user": args.user,
            "timeout": args.timeout,
            "stdin": sys.stdin.buffer.read() if args.stdin else None,
        }
        sandbox = Sandbox.from_id(sandbox_id, args.provider)  # reconnected sandboxes are never closed at exit
        if args.json:
            result = sandbox.execute(argv, **options)
            print(json.dumps(_result_json(result)))
            return 0
        return print_live(sandbox, argv, **options)
    except CommandTimeoutError as exc:
        print(f"error: {exc}", file=sys.stderr)
        if args.json:
            print(json.dumps({"error": _error_json(exc), **(_result_json(exc.result) if exc.result else {})}))
        return EXIT_TIMEOUT
    except SandboxError as exc:
        return _fail(exc, args.json)


def _pairs(items: list[str], flag: str) -> dict[str, str]:
    pairs: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise SandboxError(ErrorCode.INVALID_ARGUMENT, f"{flag} takes KEY=VALUE, got {item!r}")
        pairs[key] = value
    return pairs


def _result_json(result: Any) -> dict[str, Any]:
    return {
        "exit_code": result.exit_code,
        "stdout": result.stdout,
        "stderr": result.stderr,
        "truncated": result.truncated,
    }


def _error_json(exc: SandboxError) -> dict[str, Any]:
    return {"code": exc.code.value, "message": exc.message, "provider": exc.provider, "sandbox_id": exc.sandbox_id}


def _fail(exc: SandboxError, as_json: bool) -> int:
    print(f"error: {exc}", file=sys.stderr)
    if as_json:
        print(json.dumps({"error": _error_json(exc)}))
    return EXIT_SANDBOX_ERROR


@contextlib.contextmanager
def progress(label: str, *, quiet: bool = False, stream: TextIO | None = None) -> Iterator[None]:
    """Show ``label`` and the elapsed seconds on a terminal while the block runs; silent otherwise."""
    out = stream or sys.stderr
    if quiet or not out.isatty():
        yield
        return
    done = threading.Event()
    start = time.monotonic()

    def tick() -> None:
        while True:
            out.write(f"\r{label} ... {time.monotonic() - start:.1f}s")
            out.flush()
            if done.wait(0.2):
                return

    ticker = threading.Thread(target=tick, name="sandboxkit-progress", daemon=True)
    ticker.start()
    try:
        yield
    finally:
        done.set()
        ticker.join()
        out.write(f"\r{label} ... done in {time.monotonic() - start:.1f}s\n")
        out.flush()
