"""``sandboxkit shell|spawn|ps|logs|kill``: background processes and terminals in a running sandbox.

sandboxkit shell ID                    # an interactive terminal; exits with the shell's code
pid=$(sandboxkit spawn ID -- python -m http.server 8000)
sandboxkit ps ID
sandboxkit logs ID "$pid" --follow
sandboxkit kill ID "$pid" --signal KILL
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import select
import signal
import sys
import threading
from collections.abc import Iterator
from typing import Any

from sandboxkit._errors import ErrorCode, SandboxError
from sandboxkit.cli._run import command_argv

#: The shell ``sandboxkit shell`` starts without a command: bash where the image has it.
DEFAULT_SHELL = ["sh", "-c", "if command -v bash >/dev/null 2>&1; then exec bash -l; fi; exec sh -l"]


def add(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    shell = sub.add_parser("shell", help="an interactive terminal in a running sandbox")
    shell.add_argument("--user", help="user name or uid to run as")
    shell.add_argument("sandbox_id", metavar="ID")
    shell.add_argument("command", nargs=argparse.REMAINDER, metavar="-- CMD", help="what to run (default: a shell)")
    shell.set_defaults(handler=run_shell)

    spawn = sub.add_parser("spawn", help="start a command in the background; prints its process id")
    spawn.add_argument("--cwd", help="working directory")
    spawn.add_argument("--env", action="append", metavar="KEY=VALUE", default=[], help="environment (repeatable)")
    spawn.add_argument("--user", help="user name or uid to run as")
    spawn.add_argument("sandbox_id", metavar="ID")
    spawn.add_argument("command", nargs=argparse.REMAINDER, metavar="-- CMD [ARGS...]")
    spawn.set_defaults(handler=run_spawn)

    ps = sub.add_parser("ps", help="the processes spawned in a sandbox")
    ps.add_argument("sandbox_id", metavar="ID")
    ps.add_argument("--json", action="store_true", help="machine-readable output")
    ps.set_defaults(handler=run_ps)

    logs = sub.add_parser("logs", help="a spawned process's retained output (stdout and stderr)")
    logs.add_argument("sandbox_id", metavar="ID")
    logs.add_argument("process_id", metavar="PROCESS_ID")
    logs.add_argument("-f", "--follow", action="store_true", help="then follow live output until it exits")
    logs.set_defaults(handler=run_logs)

    kill = sub.add_parser("kill", help="signal a spawned process's whole tree")
    kill.add_argument("sandbox_id", metavar="ID")
    kill.add_argument("process_id", metavar="PROCESS_ID")
    kill.add_argument("-s", "--signal", default="TERM", help="TERM (default), KILL, INT, HUP, ...")
    kill.set_defaults(handler=run_kill)
    for cmd in (shell, spawn, ps, logs, kill):
        cmd.add_argument("--provider", help="provider of the sandbox (default: $SANDBOXKIT_PROVIDER, else docker)")


def _sandbox(args: argparse.Namespace) -> Any:
    from sandboxkit._sync_sandbox import Sandbox

    return Sandbox.from_id(args.sandbox_id, args.provider)


def _command(rest: list[str]) -> list[str] | str:
    return command_argv(rest[1:] if rest[:1] == ["--"] else rest)


def run_spawn(args: argparse.Namespace) -> int:
    if not [a for a in args.command if a != "--"]:
        print("error: give a command after --, e.g. sandboxkit spawn ID -- sleep 60", file=sys.stderr)
        return 2
    env = dict(pair.split("=", 1) for pair in args.env if "=" in pair)
    process = _sandbox(args).spawn(_command(args.command), cwd=args.cwd, env=env, user=args.user)
    print(process.id)
    return 0


def run_ps(args: argparse.Namespace) -> int:
    rows = _sandbox(args).processes()
    if args.json:
        print(
            json.dumps(
                [
                    {
                        "id": p.id,
                        "command": list(p.command),
                        "running": p.running,
                        "exit_code": p.exit_code,
                        "started_at": p.started_at.isoformat() if p.started_at else None,
                        "pty": p.pty,
                    }
                    for p in rows
                ],
                indent=2,
            )
        )
        return 0
    for p in rows:
        state = "running" if p.running else f"exited {p.exit_code}"
        started = f"{p.started_at.astimezone(dt.UTC):%H:%M:%S}" if p.started_at else "-"
        print(f"{p.id:<16} {started}  {state:<10} {' '.join(p.command)}")
    return 0


def run_logs(args: argparse.Namespace) -> int:
    process = _sandbox(args).process(args.process_id)
    for chunk in process.stream(follow=args.follow):
        target = sys.stdout.buffer if chunk.stream == "stdout" else sys.stderr.buffer
        target.write(chunk.data)
        target.flush()
    return 0


def run_kill(args: argparse.Namespace) -> int:
    _sandbox(args).process(args.process_id).kill(args.signal)
    return 0


def run_shell(args: argparse.Namespace) -> int:
    """An interactive terminal: raw mode here, the sandbox's terminal resized on SIGWINCH."""
    interactive = os.isatty(0)
    size = _size() if interactive else None
    rest = [a for a in args.command if a != "--"]
    command = _command(args.command) if rest else DEFAULT_SHELL
    process = _sandbox(args).spawn(command, pty=True, size=size, user=args.user)
    resized = threading.Event()
    finished = threading.Event()
    failure: list[BaseException] = []

    def pump_output() -> None:
        try:
            for chunk in process.stream():
                os.write(1, chunk.data)
        except BaseException as exc:  # shown after the terminal is restored
            failure.append(exc)
        finally:
            finished.set()

    previous = signal.signal(signal.SIGWINCH, lambda *_: resized.set()) if interactive else None
    reader = threading.Thread(target=pump_output, name="sandboxkit-shell-output", daemon=True)
    with _raw(interactive):
        reader.start()
        while not finished.is_set():
            if resized.is_set():
                resized.clear()
                with contextlib.suppress(Exception):  # it may just have exited
                    process.resize(*_size())
            ready, _, _ = select.select([0], [], [], 0.1)
            if not ready:
                continue
            data = os.read(0, 65536)
            try:
                if data:
                    process.write_stdin(data)
                else:
                    process.close_stdin()
                    finished.wait()
            except SandboxError as exc:
                if exc.code != ErrorCode.INVALID_ARGUMENT:  # not "it has exited": its output is on its way
                    raise
                finished.wait()
        reader.join(timeout=10)
    if previous is not None:
        signal.signal(signal.SIGWINCH, previous)
    if failure:
        raise failure[0]
    code = process.poll()
    return 0 if code is None else code


def _size() -> tuple[int, int]:
    columns, lines = os.get_terminal_size(0)
    return max(lines, 1), max(columns, 1)


@contextlib.contextmanager
def _raw(on: bool) -> Iterator[None]:
    if not on:
        yield
        return
    import termios
    import tty

    saved = termios.tcgetattr(0)
    tty.setraw(0, termios.TCSANOW)  # keep what was typed while the shell started
    try:
        yield
    finally:
        termios.tcsetattr(0, termios.TCSADRAIN, saved)
