"""``sandboxkit shell`` through a real terminal, and ``spawn``/``ps``/``logs``/``kill``: real CLI processes."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import select
import struct
import subprocess
import sys
import termios
import time
from collections.abc import Callable, Iterator

import pytest

from sandboxkit import Sandbox


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sandboxkit.cli", *args], capture_output=True, text=True, timeout=120, check=False
    )


@pytest.fixture(scope="module")
def sandbox(docker_engine: object) -> Iterator[Sandbox]:
    with Sandbox.create(image="sandboxkit/base:bookworm", provider_options={"pull": "never"}) as sb:
        yield sb


class Terminal:
    """The CLI on the far side of a pseudo-terminal, as a person at a terminal runs it."""

    def __init__(self, *args: str, rows: int = 24, cols: int = 80) -> None:
        self.pid, self.fd = pty.fork()
        if self.pid == 0:  # the child: its controlling terminal is the pty
            os.execv(sys.executable, [sys.executable, "-m", "sandboxkit.cli", *args])
        self.resize(rows, cols)
        self.seen = b""

    def resize(self, rows: int, cols: int) -> None:
        """Like a terminal window being resized: the kernel sends SIGWINCH to the CLI."""
        fcntl.ioctl(self.fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))

    def type(self, text: str) -> None:
        os.write(self.fd, text.encode())

    def expect(self, needle: str, seconds: float = 60) -> None:
        deadline = time.monotonic() + seconds
        while needle.encode() not in self.seen:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"{needle!r} did not appear within {seconds}s; the terminal shows {self.seen!r}")
            ready, _, _ = select.select([self.fd], [], [], min(left, 1.0))
            if ready:
                try:
                    self.seen += os.read(self.fd, 65536)
                except OSError:
                    raise AssertionError(f"the CLI ended before {needle!r}; it showed {self.seen!r}") from None

    def exit_code(self, seconds: float = 60) -> int:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            with_pid, status = os.waitpid(self.pid, os.WNOHANG)
            if with_pid:
                os.close(self.fd)
                return os.waitstatus_to_exitcode(status)
            ready, _, _ = select.select([self.fd], [], [], 0.2)
            if ready:
                try:
                    self.seen += os.read(self.fd, 65536)
                except OSError:
                    pass
        os.kill(self.pid, 9)
        raise AssertionError(f"the CLI did not exit within {seconds}s; it showed {self.seen!r}")


def wait_for(condition: Callable[[], bool], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)
    return True


def test_shell_is_an_interactive_terminal(sandbox: Sandbox) -> None:
    term = Terminal("shell", sandbox.id, rows=30, cols=100)
    term.expect("# ")  # the sandbox's shell prompt (root)
    term.type("stty size; echo tty-$((6*7))\r")
    term.expect("30 100")
    term.expect("tty-42")
    term.resize(50, 132)
    deadline = time.monotonic() + 60  # the CLI passes SIGWINCH on: the sandbox's terminal follows, soon
    while True:
        term.type("stty size\r")
        try:
            term.expect("50 132", seconds=2)
            break
        except AssertionError:
            if time.monotonic() > deadline:
                raise
    term.type("sleep 4321\r")

    def running() -> bool:
        return "sleep 4321" in sandbox.execute("ps -eo args").stdout

    assert wait_for(running, 60), f"the shell did not start the command; the terminal shows {term.seen!r}"
    term.type("\x03")  # raw mode here: Ctrl-C reaches the sandbox's terminal and interrupts the foreground job
    term.type("echo rc-$?\r")
    term.expect("rc-130")  # 128 + SIGINT
    assert not running()
    term.type("exit 5\r")
    assert term.exit_code() == 5


def test_spawn_ps_logs_and_kill(sandbox: Sandbox) -> None:
    spawned = cli("spawn", sandbox.id, "--", "sh", "-c", "echo started; echo oops >&2; sleep 1000")
    assert spawned.returncode == 0, spawned.stderr
    process_id = spawned.stdout.strip()
    rows = {row["id"]: row for row in json.loads(cli("ps", sandbox.id, "--json").stdout)}
    assert rows[process_id]["running"] is True
    assert process_id in cli("ps", sandbox.id).stdout
    deadline = time.monotonic() + 30
    while "started" not in (logs := cli("logs", sandbox.id, process_id)).stdout and time.monotonic() < deadline:
        time.sleep(0.3)
    assert (logs.stdout, logs.stderr) == ("started\n", "oops\n")
    assert cli("kill", sandbox.id, process_id, "--signal", "KILL").returncode == 0
    followed = cli("logs", sandbox.id, process_id, "--follow")
    assert followed.returncode == 0 and followed.stdout == "started\n"
    assert sandbox.process(process_id).poll() == 137
    unknown = cli("logs", sandbox.id, "p-nope")
    assert unknown.returncode == 3 and "INVALID_ARGUMENT" in unknown.stderr
