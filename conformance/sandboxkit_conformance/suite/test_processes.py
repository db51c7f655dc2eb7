"""Spawned processes (capability PROCESSES) and terminals (PTY): outlive the call and the client, tree kill."""

from __future__ import annotations

import random
import subprocess
import sys
import time

import pytest

from sandboxkit import Capability, ErrorCode, ProcessInfo, Sandbox
from sandboxkit_conformance._target import ConformanceTarget, SandboxPool, requires
from sandboxkit_conformance.suite._support import expect_error, no_survivors, wait_for

__all__ = ["TestProcesses", "TestPty"]


@requires(Capability.PROCESSES)
class TestProcesses:
    """``spawn`` starts a command in the background; any client reattaches by id."""

    def test_spawn_stdin_output_and_exit_code(self, shared_sandbox: Sandbox) -> None:
        process = shared_sandbox.spawn("echo out; echo err >&2; cat; exit 3", env={"X": "1"})
        assert isinstance(process.id, str) and process.id
        process.write_stdin("from stdin\n")
        process.close_stdin()
        result = process.wait(timeout=60)
        assert (result.exit_code, result.stdout, result.stderr) == (3, "out\nfrom stdin\n", "err\n")
        assert process.poll() == 3
        listed = {p.id: p for p in shared_sandbox.processes()}
        assert isinstance(listed[process.id], ProcessInfo)
        assert (listed[process.id].running, listed[process.id].exit_code) == (False, 3)

    def test_cwd_env_and_user(self, shared_sandbox: Sandbox, conformance: ConformanceTarget) -> None:
        process = shared_sandbox.spawn("pwd; echo $GREETING", cwd="/tmp", env={"GREETING": "hi"})
        assert process.wait(timeout=60).stdout == "/tmp\nhi\n"
        if conformance.declares(Capability.USER):
            as_nobody = shared_sandbox.spawn("id -u", user="65534")
            assert as_nobody.wait(timeout=60).stdout.strip() == "65534"

    def test_wait_timeout_leaves_it_running_and_stream_replays_then_follows(self, shared_sandbox: Sandbox) -> None:
        process = shared_sandbox.spawn("echo first; sleep 8; echo second")
        assert wait_for(lambda: "first" in _output_so_far(process), 30), "no output from the process"
        with expect_error(ErrorCode.COMMAND_TIMEOUT, "wait(timeout=1) on a process that runs 8 s") as caught:
            process.wait(timeout=1)
        result = caught.error.result  # type: ignore[attr-defined]
        assert result is not None and "first" in result.stdout
        assert process.poll() is None, "a wait that timed out must not end the process"
        chunks = [chunk.text for chunk in process.stream()]
        assert "".join(chunks) == "first\nsecond\n", chunks
        assert process.poll() == 0

    def test_kill_ends_the_whole_tree(self, shared_sandbox: Sandbox) -> None:
        if shared_sandbox.execute("command -v setsid").exit_code != 0:
            pytest.skip("the image has no setsid")
        marker = str(random.randint(60000, 69999))
        script = f"sleep {marker}1 & setsid sleep {marker}2 & sh -c '(sleep {marker}3 &)'; sleep {marker}4"
        process = shared_sandbox.spawn(["sh", "-c", script])
        assert wait_for(lambda: len(_alive(shared_sandbox, f"sleep {marker}")) >= 4, 30), _alive(
            shared_sandbox, f"sleep {marker}"
        )
        process.kill("KILL")
        left = no_survivors(shared_sandbox, f"sleep {marker}", 15)
        assert not left, f"kill('KILL') left {left}"
        assert process.wait(timeout=30).exit_code == 137

    def test_term_reaches_the_process(self, shared_sandbox: Sandbox) -> None:
        process = shared_sandbox.spawn("trap 'echo got-term; exit 7' TERM; while :; do sleep 0.1; done")
        time.sleep(0.5)
        process.kill()
        result = process.wait(timeout=30)
        assert (result.exit_code, result.stdout) == (7, "got-term\n")

    def test_unknown_process_and_bad_signal_are_invalid(self, shared_sandbox: Sandbox) -> None:
        with expect_error(ErrorCode.INVALID_ARGUMENT, "process() with an unknown id"):
            shared_sandbox.process("p-does-not-exist")
        process = shared_sandbox.spawn("sleep 30")
        try:
            with expect_error(ErrorCode.INVALID_ARGUMENT, "kill(signal='NOPE')"):
                process.kill("NOPE")
        finally:
            process.kill("KILL")
        process.wait(timeout=30)
        with expect_error(ErrorCode.INVALID_ARGUMENT, "write_stdin() after the process ended"):
            process.write_stdin("late")

    def test_it_outlives_the_client_that_spawned_it(
        self, sandboxes: SandboxPool, conformance: ConformanceTarget
    ) -> None:
        if not conformance.declares(Capability.RECONNECT):
            return
        sandbox = sandboxes.create()
        code = (
            "import sys; from sandboxkit import Sandbox; "
            "sb = Sandbox.from_id(sys.argv[1], sys.argv[2]); "
            "p = sb.spawn('head -c 1500000 /dev/zero | tr \"\\\\0\" x; echo; echo tail; sleep 1; exit 5'); "
            "print(p.id)"
        )
        spawned = subprocess.run(
            [sys.executable, "-c", code, sandbox.id, conformance.provider],
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert spawned.returncode == 0, spawned.stderr[-2000:]
        process_id = spawned.stdout.strip()
        # the spawning Python process is gone; a new client finds the process and its retained output
        again = Sandbox.from_id(sandbox.id, conformance.provider)
        result = again.process(process_id).wait(timeout=120)
        assert result.exit_code == 5
        assert result.stdout.endswith("\ntail\n") and len(result.stdout) >= (1 << 20), len(result.stdout)


@requires(Capability.PROCESSES, Capability.PTY)
class TestPty:
    """``spawn(pty=True)``: a terminal's byte stream, its line discipline, and ``resize``."""

    def test_terminal_size_resize_and_ctrl_c(self, shared_sandbox: Sandbox) -> None:
        process = shared_sandbox.spawn("sh", pty=True, size=(30, 100))
        assert process.pty
        process.write_stdin("stty size\n")
        assert wait_for(lambda: "30 100" in _output_so_far(process), 30), _output_so_far(process)
        process.resize(40, 120)
        process.write_stdin("stty size\n")
        assert wait_for(lambda: "40 120" in _output_so_far(process), 30), _output_so_far(process)
        process.write_stdin("sleep 1000\n")
        time.sleep(0.5)
        process.write_stdin("\x03")  # Ctrl-C through the line discipline interrupts the foreground job
        process.write_stdin("echo after-$((40+2))\n")
        assert wait_for(lambda: "after-42" in _output_so_far(process), 30), _output_so_far(process)
        process.write_stdin("exit 4\n")
        result = process.wait(timeout=60)
        assert result.exit_code == 4
        assert "\r\n" in result.stdout, "a terminal turns \\n into \\r\\n"
        assert result.stderr == "", "on a terminal everything arrives as stdout"

    def test_resize_needs_a_terminal(self, shared_sandbox: Sandbox) -> None:
        process = shared_sandbox.spawn("sleep 30")
        try:
            with expect_error(ErrorCode.INVALID_ARGUMENT, "resize() of a process without a terminal"):
                process.resize(10, 10)
        finally:
            process.kill("KILL")


def _alive(sandbox: Sandbox, marker: str) -> list[str]:
    from sandboxkit_conformance.suite._support import survivors

    return survivors(sandbox, marker)


def _output_so_far(process: object) -> str:
    from sandboxkit import Process

    assert isinstance(process, Process)
    return "".join(chunk.text for chunk in process.stream(follow=False))
