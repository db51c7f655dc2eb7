"""Resource limits are enforced by the engine, not just recorded: cpu, memory (OOM), pids, file size
(the disk cap: tests/security/test_disk_cap.py)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from sandboxkit import ErrorCode, Sandbox, SandboxError, portal

pytestmark = pytest.mark.usefixtures("docker_engine")

# A CPU-bound loop that reports its own wall time and CPU time, so exec start-up is not measured.
SPIN = (
    "import time; t, c = time.perf_counter(), time.process_time(); n = 0\n"
    "for i in range(6_000_000): n += i\n"
    "print(time.perf_counter() - t, time.process_time() - c)"
)
BOMB = "import os\nwhile True:\n    try: os.fork()\n    except OSError: pass"


@pytest.fixture(scope="module")
def memory_box() -> Iterator[Sandbox]:
    with Sandbox.create(memory_mib=64, timeout=300) as sb:
        yield sb


def _stretch(sb: Sandbox) -> float:
    """Wall time of the loop over its CPU time: 1 when it never waits, 2 when it may use half a CPU."""
    wall, cpu = (float(x) for x in sb.execute(["python3", "-c", SPIN], check=True).stdout.split())
    return wall / cpu


def test_half_a_cpu_runs_a_loop_about_half_as_fast_as_one_cpu() -> None:
    # unpinned, so both see the same machine; the quota alone differs
    unpinned = {"provider_options": {"pin_cpus": False}}
    with Sandbox.create(cpu=0.5, **unpinned) as half, Sandbox.create(cpu=1, **unpinned) as one:  # type: ignore[arg-type]
        # interleaved rounds, best of each: other work on this shared machine slows both alike
        rounds: dict[str, list[float]] = {"half": [], "one": []}
        for _ in range(5):
            rounds["half"].append(_stretch(half))
            rounds["one"].append(_stretch(one))
        ratio = min(rounds["half"]) / min(rounds["one"])
        assert 1.4 <= ratio <= 3.5, f"cpu=0.5 vs cpu=1 time ratio {ratio:.2f} ({rounds})"
        assert half.instance.client.api.inspect_container(half.id)["HostConfig"]["NanoCpus"] == 500_000_000
        assert half.execute("echo $SANDBOXKIT_CPU").stdout.strip() == "0.5"


def test_a_cpuset_makes_nproc_tell_the_truth() -> None:
    with Sandbox.create(cpu=0.5) as sb:
        assert sb.execute("nproc").stdout.strip() == "1"
        assert sb.instance.client.api.inspect_container(sb.id)["HostConfig"]["CpusetCpus"] in {"0", "1"}


def test_pin_cpus_off_keeps_every_cpu_visible(docker_engine: Any) -> None:
    ncpu = docker_engine.info()["NCPU"]
    with Sandbox.create(cpu=1, provider_options={"pin_cpus": False}) as sb:
        assert sb.execute("nproc").stdout.strip() == str(ncpu)
        assert sb.instance.client.api.inspect_container(sb.id)["HostConfig"]["CpusetCpus"] == ""


def test_memory_is_a_hard_limit_without_swap(memory_box: Sandbox) -> None:
    host = memory_box.instance.client.api.inspect_container(memory_box.id)["HostConfig"]
    assert host["Memory"] == host["MemorySwap"] == 64 << 20
    assert memory_box.execute("echo $SANDBOXKIT_MEMORY_MIB").stdout.strip() == "64"


def test_oom_inside_a_command_is_resource_limit_exceeded(memory_box: Sandbox) -> None:
    with pytest.raises(SandboxError) as err:
        memory_box.execute(["python3", "-c", "b = bytearray(256 << 20)"])
    assert err.value.code == ErrorCode.RESOURCE_LIMIT_EXCEEDED
    assert "memory_mib" in err.value.message
    # the kill hit only the command: the sandbox still answers, and Docker's own flag stayed false
    assert memory_box.execute("echo alive").stdout == "alive\n"
    assert memory_box.instance.client.api.inspect_container(memory_box.id)["State"]["OOMKilled"] is False


def test_oom_of_a_child_is_reported_even_when_the_command_exits_0(memory_box: Sandbox) -> None:
    with pytest.raises(SandboxError) as err:
        memory_box.execute("python3 -c 'b = bytearray(256 << 20)'; echo survived")
    assert err.value.code == ErrorCode.RESOURCE_LIMIT_EXCEEDED
    assert err.value.result is not None
    assert err.value.result.exit_code == 0
    assert memory_box.execute("true").exit_code == 0  # no stale report on the next command


def test_oom_is_reported_through_the_in_sandbox_counter_too(memory_box: Sandbox) -> None:
    """The path of a client of a remote engine: no host cgroupfs, so the counter is read from inside."""
    reconnected = Sandbox.from_id(memory_box.id)
    oom = reconnected.handle.oom  # type: ignore[attr-defined]
    oom.host_path = None  # what a client of a remote engine sees
    portal().call(oom.prime)
    assert isinstance(oom.baseline, int)  # learned with one exec inside the sandbox
    assert reconnected.execute("exit 3").exit_code == 3  # a plain failure is not an OOM
    with pytest.raises(SandboxError) as err:
        reconnected.execute(["python3", "-c", "b = bytearray(256 << 20)"])
    assert err.value.code == ErrorCode.RESOURCE_LIMIT_EXCEEDED


def test_a_fork_bomb_is_contained_and_the_sandbox_recovers() -> None:
    with Sandbox.create(provider_options={"pids_limit": 64}) as sb:
        assert sb.instance.client.api.inspect_container(sb.id)["HostConfig"]["PidsLimit"] == 64
        assert sb.execute("echo $SANDBOXKIT_PIDS_LIMIT").stdout.strip() == "64"
        with pytest.raises(SandboxError) as err:
            sb.execute(["python3", "-c", BOMB], timeout=3)
        assert err.value.code == ErrorCode.COMMAND_TIMEOUT
        # every forked copy was killed (with shell builtins only: no pid was free for a helper)
        processes = sb.execute("ls -d /proc/[0-9]* | wc -l", timeout=30).stdout
        assert int(processes) < 10, processes


def test_max_file_mib_caps_each_file() -> None:
    with Sandbox.create(provider_options={"max_file_mib": 1}) as sb:
        r = sb.execute("head -c 3000000 /dev/zero > /tmp/f; echo rc=$?; wc -c < /tmp/f")
        assert "rc=153" in r.stdout or "File size limit exceeded" in r.output  # SIGXFSZ
        assert r.stdout.strip().splitlines()[-1] == str(1 << 20)
        assert sb.execute("echo $SANDBOXKIT_MAX_FILE_MIB").stdout.strip() == "1"
