"""The exec agent's channel holds against root inside the sandbox (issue #11, item 2).

Every attack runs for real, as root in a default sandbox, through the public API: forged frames
of every kind aimed at every fd of the agent and its reapers, reads of its pipes and memory, a
flood through the attacker's own output, and an attacker lying in wait for the agent to start.
"""

from __future__ import annotations

import json
import os
import struct
import time
from typing import Any

import anyio
import pytest

import sandboxkit
from sandboxkit import ErrorCode, SandboxError

pytestmark = pytest.mark.docker

FRAME = struct.Struct(">BII")  # the agent's frame header: kind, channel, length
FAKE_EXIT = b'{"code": 0}'
FORGED = b"".join(
    [
        FRAME.pack(17, 1, 0xFFFFFFFF),  # STDOUT announcing 4 GiB
        FRAME.pack(19, 2, len(FAKE_EXIT)) + FAKE_EXIT,  # a fake EXIT
        FRAME.pack(17, 0xDEADBEEF, 5) + b"forge",  # a wrong channel
        FRAME.pack(16, 0, 2) + b"{}",  # a second HELLO
    ]
)

#: Runs as root in the sandbox: try every way into the agent's and the reapers' fds and memory.
ATTACK = r"""
import json, os, sys
forged = bytes.fromhex(sys.argv[1])
me = os.getpid()
tried, opened = [], []
for pid in os.listdir("/proc"):
    if not pid.isdigit() or int(pid) == me:
        continue
    try:
        comm = open(f"/proc/{pid}/comm").read().strip()
    except OSError:
        continue
    if comm not in ("sbk-exec-agent", "sbk-exec-cmd", "sbk-reaper"):
        continue
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        fds = ["0", "1", "2"]
    for name in fds + ["mem", "environ"]:
        path = f"/proc/{pid}/{name}" if not name.isdigit() else f"/proc/{pid}/fd/{name}"
        for mode in (os.O_WRONLY, os.O_RDONLY):
            tried.append(path)
            try:
                fd = os.open(path, mode | os.O_NONBLOCK)
            except OSError:
                continue
            opened.append(path)
            try:
                os.write(fd, forged) if mode == os.O_WRONLY else os.read(fd, 4096)
            except OSError:
                pass
            os.close(fd)
print(json.dumps({"tried": len(tried), "opened": opened}))
"""


def warm(sb: sandboxkit.Sandbox) -> int:
    """Run enough commands that the agent is up and takes the next one; its pid."""
    for _ in range(3):
        sb.execute(["true"])
    mux = sb.handle.fast.mux  # type: ignore[attr-defined]
    assert mux is not None and mux.hello is not None, sb.handle.fast.disabled  # type: ignore[attr-defined]
    return int(mux.hello["pid"])


def rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def test_root_inside_cannot_open_the_agents_fds_or_memory(sandbox: sandboxkit.Sandbox) -> None:
    pid = warm(sandbox)
    mux = sandbox.handle.fast.mux  # type: ignore[attr-defined]
    sandbox.execute("sleep 30 & echo background")  # a reaper that lingers, with its own fds

    results: dict[str | int, Any] = {}

    async def attack_while_echoing() -> None:
        async def attack() -> None:
            results["attack"] = await sandbox.aio.execute(["python3", "-c", ATTACK, FORGED.hex()], timeout=60)

        async def echo(i: int) -> None:
            results[i] = await sandbox.aio.execute(f"echo hi{i}", timeout=5)

        async with anyio.create_task_group() as tg:
            tg.start_soon(attack)
            for i in range(5):
                tg.start_soon(echo, i)

    sandboxkit._portal.call(attack_while_echoing)  # type: ignore[attr-defined]
    report = json.loads(results["attack"].stdout)
    assert report["tried"] >= 12, report  # it found the agent and its reapers
    assert report["opened"] == [], f"root inside opened the agent's channel: {report['opened']}"
    for i in range(5):
        assert results[i].stdout == f"hi{i}\n" and results[i].exit_code == 0
    assert sandbox.handle.fast.mux is mux and mux.dead is None  # type: ignore[attr-defined]
    assert int(sandbox.execute("ps -o ppid= -p $PPID").stdout) == pid  # the same agent still runs


def test_commands_inherit_none_of_the_agents_fds(sandbox: sandboxkit.Sandbox) -> None:
    warm(sandbox)
    listing = ["python3", "-c", "import os; print(sorted(map(int, os.listdir('/proc/self/fd'))))"]
    assert sandbox.execute(listing).stdout.strip() == "[0, 1, 2, 3]"  # stdio, and the listing itself
    assert sandbox.execute(listing, stdin=b"").stdout.strip() == "[0, 1, 2, 3]"


def test_forged_frames_in_the_attackers_own_output_change_only_its_own_result(sandbox: sandboxkit.Sandbox) -> None:
    warm(sandbox)
    r = sandbox.execute(
        ["python3", "-c", "import os,sys; os.write(1, bytes.fromhex(sys.argv[1])); sys.exit(3)", FORGED.hex()]
    )
    assert r.stdout_bytes == FORGED and r.exit_code == 3  # data, not frames; its real exit code
    assert sandbox.execute("echo hi", timeout=5).stdout == "hi\n"


def test_a_flood_of_forged_frames_costs_the_client_at_most_the_output_cap(sandbox: sandboxkit.Sandbox) -> None:
    warm(sandbox)
    mux = sandbox.handle.fast.mux  # type: ignore[attr-defined]
    flood = "import os,sys\nh=bytes.fromhex(sys.argv[1])*4096\nfor _ in range(600<<20//len(h)):os.write(1,h)\n"
    before = rss()
    peak = [before]

    async def flood_and_echo() -> None:
        async def watch() -> None:
            while True:
                peak[0] = max(peak[0], rss())
                await anyio.sleep(0.05)

        async with anyio.create_task_group() as tg:
            tg.start_soon(watch)
            r = await sandbox.aio.execute(["python3", "-c", flood, FORGED.hex()], max_output=1 << 20, timeout=120)
            assert r.truncated and len(r.output_bytes) == 1 << 20 and r.exit_code == 0
            assert (await sandbox.aio.execute("echo hi", timeout=5)).stdout == "hi\n"
            tg.cancel_scope.cancel()

    sandboxkit._portal.call(flood_and_echo)  # type: ignore[attr-defined]
    assert peak[0] - before < (1 << 20) + (64 << 20), f"client RSS grew by {(peak[0] - before) >> 20} MiB"
    assert sandbox.handle.fast.mux is mux and mux.dead is None  # type: ignore[attr-defined]


#: Runs in the background from the sandbox's first command (before any agent exists): wait for the
#: agent's loader to appear, race to grab its stdio, then forge frames into what it got for 20 s.
LURK = r"""#lurker
import os, sys, time
forged, me = bytes.fromhex(sys.argv[1]), str(os.getpid())
seen, got, end = set(), [], time.monotonic() + 20
while time.monotonic() < end:
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or pid in seen or pid == me:
            continue
        try:
            if not open(f"/proc/{pid}/cmdline", "rb").read().startswith(b"python3\0-I\0-S\0-c\0#sandboxkit-exec-agent"):
                continue
        except OSError:
            continue
        seen.add(pid)
        for n, mode in ((1, os.O_WRONLY), (0, os.O_RDONLY)):
            try:
                got.append(os.open(f"/proc/{pid}/fd/{n}", mode | os.O_NONBLOCK))
            except OSError:
                pass
        with open("/tmp/lurk", "a") as log:
            log.write(f"seen {pid} got {len(got)}\n")
    for fd in got:
        try:
            os.write(fd, forged)
        except OSError:
            pass
    time.sleep(0.001)
"""


def test_an_attacker_lying_in_wait_for_the_agent_gains_nothing(sandbox: sandboxkit.Sandbox) -> None:
    # the first command runs through docker exec; the lurker outlives it and waits for the agent
    sandbox.execute(["sh", "-c", 'nohup python3 -c "$0" "$1" >/dev/null 2>&1 &', LURK, FORGED.hex()])
    for i in range(20):  # the agent starts beside the second command; every answer must stay right
        r = sandbox.execute(f"echo hi{i}", timeout=10)
        assert (r.stdout, r.exit_code) == (f"hi{i}\n", 0)
    with pytest.raises(SandboxError) as err:  # and the timeout still kills what it must
        sandbox.execute("sleep 600", timeout=1)
    assert err.value.code == ErrorCode.COMMAND_TIMEOUT
    log = sandbox.execute("cat /tmp/lurk").stdout
    assert log.startswith("seen "), log  # it saw the agent start
    # whatever it grabbed in the moment before the agent closed itself, nothing answered wrong:
    # a grabbed stream is killed by the agent at once or refused by the client, which then falls
    # back to docker exec for this sandbox
    print(f"lurker: {log!r}; fast path: {sandbox.handle.fast.disabled or 'on'}")  # type: ignore[attr-defined]


def test_a_command_that_stops_and_kills_the_agent_loses_only_its_own_result(sandbox: sandboxkit.Sandbox) -> None:
    pid = warm(sandbox)
    r = sandbox.execute(f"kill -STOP {pid}; sleep 1; kill -KILL {pid}; sleep 1; echo after")
    assert r.exit_code == 137
    with pytest.raises(SandboxError) as err:
        sandbox.execute("sleep 5", timeout=1)
    assert err.value.code == ErrorCode.COMMAND_TIMEOUT
    assert sandbox.execute("echo ok").stdout == "ok\n"


def test_a_stopped_agent_is_killed_and_takes_its_commands_trees_with_it(
    docker_engine: Any, sandbox: sandboxkit.Sandbox
) -> None:
    pid = warm(sandbox)
    with pytest.raises(SandboxError) as err:  # the client waits timeout + 5 s, then gives the agent up
        sandbox.execute(f"env -i setsid sleep 1001 & kill -STOP {pid}; sleep 1000", timeout=2)
    assert err.value.code == ErrorCode.COMMAND_TIMEOUT
    container = docker_engine.containers.get(sandbox.id)
    deadline = time.monotonic() + 20
    while True:  # the agent was killed by pid through docker exec; its reaper killed the command's tree
        ps = container.exec_run(["ps", "-eo", "pid=,args="]).output.decode()
        left = [line for line in ps.splitlines() if "sleep 100" in line or line.split()[0] == str(pid)]
        if not left:
            break
        assert time.monotonic() < deadline, f"left running: {left}"
        time.sleep(0.3)
    assert sandbox.execute("echo ok").stdout == "ok\n"


def test_killing_idle_reapers_changes_no_other_commands_result(sandbox: sandboxkit.Sandbox) -> None:
    warm(sandbox)
    for i in range(5):
        sandbox.execute("kill -9 $(pgrep -x sbk-reaper) 2>/dev/null; true")  # every waiting reaper
        r = sandbox.execute(f"echo hi{i}", timeout=10)
        assert (r.stdout, r.exit_code) == (f"hi{i}\n", 0)
