"""``sandboxkit create`` / ``sandboxkit exec`` as scripts use them: real CLI processes, a real Docker engine."""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys
from collections.abc import Iterator

import pytest

from sandboxkit import Sandbox, SandboxError


def cli(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "sandboxkit.cli", *args], input=stdin, capture_output=True, timeout=120, check=False
    )


@pytest.fixture(scope="module")
def sandbox_id(docker_engine: object) -> Iterator[str]:
    created = cli("create", "--timeout", "600", "--env", "GREETING=hi", "--workdir", "/srv")
    assert created.returncode == 0, created.stderr
    sandbox_id = created.stdout.decode().strip()
    yield sandbox_id
    try:
        Sandbox.from_id(sandbox_id, "docker").close()
    except SandboxError:
        pass


def test_create_prints_the_id_of_a_sandbox_that_outlives_the_cli(sandbox_id: str) -> None:
    assert len(sandbox_id) == 64
    assert sandbox_id.isalnum()
    reconnected = Sandbox.from_id(sandbox_id, "docker")
    assert reconnected.execute("echo $GREETING; pwd").stdout == "hi\n/srv\n"
    # the CLI process that created it is gone, yet gc does not count it as an orphan
    stale = json.loads(cli("gc", "--dry-run", "--json", "--provider", "docker").stdout)
    assert sandbox_id not in [row["id"] for row in stale]


def test_exec_streams_output_and_passes_the_exit_code_through(sandbox_id: str) -> None:
    done = cli("exec", sandbox_id, "--", "sh", "-c", "echo out; echo err >&2; exit 7")
    assert (done.returncode, done.stdout, done.stderr) == (7, b"out\n", b"err\n")
    shell_line = cli("exec", sandbox_id, "--", "echo a b | wc -w")
    assert (shell_line.returncode, shell_line.stdout) == (0, b"2\n")


def test_exec_options_before_or_after_the_id(sandbox_id: str) -> None:
    before = cli("exec", "--cwd", "/tmp", "--env", "X=1", sandbox_id, "--", "sh", "-c", "pwd; echo $X")
    after = cli("exec", sandbox_id, "--cwd", "/tmp", "--env", "X=1", "--", "sh", "-c", "pwd; echo $X")
    assert before.stdout == after.stdout == b"/tmp\n1\n"


def test_exec_passes_stdin_only_when_asked(sandbox_id: str) -> None:
    data = bytes(range(256)) * 1000
    piped = cli("exec", "--stdin", sandbox_id, "--", "wc", "-c", stdin=data)
    assert piped.stdout.strip() == str(len(data)).encode()
    ignored = cli("exec", sandbox_id, "--", "wc", "-c", stdin=data)
    assert ignored.stdout.strip() == b"0"


def test_exec_json_reports_the_result_and_exits_zero_once_the_command_ran(sandbox_id: str) -> None:
    done = cli("exec", "--json", sandbox_id, "--", "sh", "-c", "printf 'x\\n'; echo bad >&2; exit 5")
    assert done.returncode == 0
    assert json.loads(done.stdout) == {"exit_code": 5, "stdout": "x\n", "stderr": "bad\n", "truncated": False}


def test_exec_timeout_kills_the_command_and_exits_124(sandbox_id: str) -> None:
    done = cli("exec", "--timeout", "1", sandbox_id, "--", "sh", "-c", "echo partial; sleep 30")
    assert (done.returncode, done.stdout) == (124, b"partial\n")
    assert b"COMMAND_TIMEOUT" in done.stderr
    as_json = json.loads(cli("exec", "--json", "--timeout", "1", sandbox_id, "--", "sleep", "30").stdout)
    assert as_json["error"]["code"] == "COMMAND_TIMEOUT"
    # the sandbox survives the timeout and the CLI process that ended with it
    assert cli("exec", sandbox_id, "--", "true").returncode == 0


def test_errors_exit_3_with_the_error_code(docker_engine: object) -> None:
    missing = cli("exec", "no-such-sandbox", "--", "true")
    assert missing.returncode == 3
    assert b"SANDBOX_NOT_FOUND" in missing.stderr
    as_json = cli("exec", "--json", "no-such-sandbox", "--", "true")
    assert as_json.returncode == 3
    assert json.loads(as_json.stdout)["error"]["code"] == "SANDBOX_NOT_FOUND"
    bad = cli("create", "--json", "--cpu", "-1")
    assert bad.returncode == 3
    assert json.loads(bad.stdout)["error"]["code"] == "INVALID_ARGUMENT"
    bad_env = cli("create", "--env", "NOEQUALS")
    assert bad_env.returncode == 3
    assert b"KEY=VALUE" in bad_env.stderr


def test_usage_errors_exit_2() -> None:
    assert cli("exec").returncode == 2
    assert cli("exec", "some-id").returncode == 2
    assert cli("create", "--no-such-flag").returncode == 2


def test_create_json_and_progress_on_a_terminal(docker_engine: object) -> None:
    created = cli("create", "--json", "--timeout", "120", "--tag", "team=x")
    info = json.loads(created.stdout)
    assert (info["provider"], info["app"], created.stderr) == ("docker", "sandboxkit", b"")
    Sandbox.from_id(info["id"], "docker").close()
    # on a terminal, create shows what it is waiting for
    primary, secondary = pty.openpty()
    try:
        on_tty = subprocess.run(
            [sys.executable, "-m", "sandboxkit.cli", "create", "--timeout", "120"],
            stdout=subprocess.PIPE,
            stderr=secondary,
            timeout=120,
            check=True,
        )
        shown = os.read(primary, 4096)
    finally:
        os.close(primary)
        os.close(secondary)
    Sandbox.from_id(on_tty.stdout.decode().strip(), "docker").close()
    assert b"creating a sandbox on the default provider ..." in shown
    assert b"done in" in shown
