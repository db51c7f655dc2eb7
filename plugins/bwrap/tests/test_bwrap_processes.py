"""Spawned processes on bwrap: inside the sandbox's namespaces and limits, apart from commands, gone at close.

The conformance suite (``test_bwrap_conformance.py``) proves the API; these check, from the host,
what is specific to this provider: where a spawned process runs and that it gives no way out.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from sandboxkit_bwrap import _registry
from sandboxkit_bwrap._cgroups import sandbox_cgroups
from sandboxkit_bwrap._supervisor import cgroup_pids

from sandboxkit import ErrorCode, Process, Sandbox, SandboxError

MakeSandbox = Callable[..., Sandbox]
BUSYBOX = "sandboxkit/busybox:latest"
NAMESPACES = ("pid", "uts", "net", "mnt", "ipc", "user", "cgroup")


def _wait_for(check: Callable[[], bool], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.1)
    return check()


def _spawned_pids(sandbox_id: str) -> list[int]:
    """Host pids of every process in the sandbox's spawned-process cgroups (``proc-N``)."""
    pids = []
    for procs in sandbox_cgroups(sandbox_id).commands_dir.glob("proc-*/cgroup.procs"):
        pids += [int(p) for p in procs.read_text().split()]
    return pids


def _alive(pid: int) -> bool:
    try:
        return (Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]) not in ("Z", "X")
    except (OSError, IndexError):
        return False


def test_a_spawned_process_runs_inside_the_sandbox_and_ends_with_it(make: MakeSandbox) -> None:
    sb = make(block_network=True, provider_options={"hostname": "procbox"}, memory_mib=256)
    process = sb.spawn("hostname; echo $$; readlink /proc/self/ns/pid; exec sleep 600")
    assert _wait_for(lambda: len(_output(process).splitlines()) >= 3, 30), _output(process)
    hostname, pid_inside, pidns = _output(process).splitlines()[:3]
    assert hostname == "procbox", "a spawned process sees the sandbox's hostname"
    assert int(pid_inside) < 100, "a spawned process has a small pid: the sandbox's pid namespace"
    assert pidns == sb.execute("readlink /proc/self/ns/pid").stdout.strip(), "the same pid namespace as commands"
    assert "sleep 600" in sb.execute("ps -eo args").stdout, "commands see the spawned process"

    record = _registry.load(sb.id)
    assert record is not None
    ready = _registry.ready_state(record)
    assert ready is not None
    init = int(ready["init_pid"])
    pids = _spawned_pids(sb.id)
    assert pids, "the spawned process's supervisor and command are in a proc-N cgroup of the sandbox"
    for pid in pids:  # seen from the host: the sandbox's namespaces, its limit cgroups
        for ns in NAMESPACES:
            if ns == "cgroup":  # each command (this start too) gets a cgroup namespace of its own, never the host's
                assert os.readlink(f"/proc/{pid}/ns/{ns}") != os.readlink("/proc/self/ns/cgroup"), pid
                continue
            assert os.readlink(f"/proc/{pid}/ns/{ns}") == os.readlink(f"/proc/{init}/ns/{ns}"), (pid, ns)
        cgroups = Path(f"/proc/{pid}/cgroup").read_text()
        for controller in ("memory", "pids", "cpu"):
            procs = cgroup_pids(str(sandbox_cgroups(sb.id).dir(controller)))
            assert pid in procs, f"pid {pid} is not held by the sandbox's {controller} cgroup: {cgroups}"
        assert os.stat(f"/proc/{pid}").st_uid >= 100000, "it runs as the sandbox's root, never host root"

    sb.close()
    assert _wait_for(lambda: not any(map(_alive, pids)), 30), "closing the sandbox left its spawned process"


def test_a_command_timeout_kills_the_command_not_a_spawned_process(make: MakeSandbox) -> None:
    sb = make(block_network=True)
    process = sb.spawn("sleep 600")
    with pytest.raises(SandboxError) as err:
        sb.execute("sleep 600", timeout=1)
    assert err.value.code == ErrorCode.COMMAND_TIMEOUT
    assert process.poll() is None, "a command's tree kill reached a spawned process"
    assert "sleep 600" in sb.execute("ps -eo args").stdout
    process.kill("KILL")
    assert process.wait(timeout=30).exit_code == 137


def test_idle_timeout_counts_calls_not_a_process_left_running(make: MakeSandbox) -> None:
    """As on Docker: waiting on a spawned process is a command (activity); the process alone is not."""
    idle = 3
    sb = make(block_network=True, idle_timeout=idle, timeout=300)
    process = sb.spawn("sleep 600")
    with pytest.raises(SandboxError) as waited:
        process.wait(timeout=idle + 3)  # longer than idle_timeout: the wait keeps the sandbox
    assert waited.value.code == ErrorCode.COMMAND_TIMEOUT
    pids = _spawned_pids(sb.id)
    assert pids and process.poll() is None
    gone = lambda: all(info.id != sb.id for info in Sandbox.list(provider="bwrap"))  # noqa: E731
    assert _wait_for(gone, idle + 30), "a sandbox with only a spawned process was not idle"
    assert _wait_for(lambda: not any(map(_alive, pids)), 30), "the idle end left the spawned process"


def test_a_root_without_python_refuses_spawn_clearly(make: MakeSandbox) -> None:
    sb = make(image=BUSYBOX, block_network=True)
    with pytest.raises(SandboxError) as err:
        sb.spawn("echo hi")
    assert err.value.code == ErrorCode.CAPABILITY_NOT_SUPPORTED
    assert "python3" in err.value.message
    assert sb.execute("echo still").stdout == "still\n", "the refusal leaves the sandbox working"
    assert not _spawned_pids(sb.id)


def _output(process: Process) -> str:
    return "".join(chunk.text for chunk in process.stream(follow=False))


def test_commands_take_sigint_and_sigquit(make: MakeSandbox) -> None:
    """No SIG_IGN inherited from the agent's start (bash ignores both in a background command)."""
    sb = make(block_network=True)
    assert sb.execute("grep SigIgn /proc/self/status").stdout.split() == ["SigIgn:", "0" * 16]
    result = sb.execute("kill -INT $$; echo survived")
    assert (result.exit_code, result.stdout) == (130, ""), "SIGINT did not end the command"
