"""Default limits of a Docker sandbox that asked for none: a CPU quota of half the host's CPUs (at
least one), memory at half the host's RAM up to 8 GiB, 4096 pids; each replaced by its option.
The CPU cap is attacked: a sandbox running a busy loop on every host CPU gets no more than it."""

from __future__ import annotations

from typing import Any

import pytest

from sandboxkit import Sandbox

pytestmark = pytest.mark.usefixtures("docker_engine")

#: one busy loop per host CPU for a few seconds, then the sandbox's CPU time (cgroup v1 or v2), ns
HOG = """
import multiprocessing, os, time
def spin(until):
    while time.time() < until: pass
def usage():
    for path, scale in (("/sys/fs/cgroup/cpuacct/cpuacct.usage", 1), ("/sys/fs/cgroup/cpu.stat", 1000)):
        if os.path.exists(path):
            text = open(path).read()
            return int(text.split()[1] if "usage_usec" in text else text) * scale
before, start = usage(), time.time()
procs = [multiprocessing.Process(target=spin, args=(start + 4,)) for _ in range(os.cpu_count())]
for p in procs: p.start()
for p in procs: p.join()
print((usage() - before) / 1e9, time.time() - start)
"""


def _host(docker_engine: Any) -> tuple[int, int]:
    info = docker_engine.info()
    return int(info["NCPU"]), int(info["MemTotal"])


def test_a_sandbox_that_asked_for_nothing_is_capped(docker_engine: Any) -> None:
    ncpu, mem_total = _host(docker_engine)
    with Sandbox.create() as sb:
        host_config = sb.instance.client.api.inspect_container(sb.id)["HostConfig"]
        assert host_config["NanoCpus"] == int(max(1.0, ncpu / 2) * 1e9)
        assert host_config["CpusetCpus"] == ""  # the default is a quota only: nproc shows the host
        memory_mib = min(8192, max(512, (mem_total >> 20) // 2))
        assert host_config["Memory"] == host_config["MemorySwap"] == memory_mib << 20
        assert host_config["PidsLimit"] == 4096
        assert sb.execute("echo $SANDBOXKIT_MEMORY_MIB").stdout.strip() == str(memory_mib)


def test_options_replace_the_defaults(docker_engine: Any) -> None:
    ncpu, _ = _host(docker_engine)
    with Sandbox.create(cpu=ncpu, memory_mib=300, provider_options={"pids_limit": 100}) as sb:
        host_config = sb.instance.client.api.inspect_container(sb.id)["HostConfig"]
        assert host_config["NanoCpus"] == ncpu * 10**9
        assert host_config["Memory"] == 300 << 20
        assert host_config["PidsLimit"] == 100


def test_busy_loops_on_every_cpu_get_no_more_than_the_default_quota(docker_engine: Any) -> None:
    ncpu, _ = _host(docker_engine)
    quota = max(1.0, ncpu / 2)
    with Sandbox.create(timeout=120) as sb:
        out = sb.execute(["python3", "-c", HOG], check=True, timeout=60).stdout
    cpu_seconds, wall = (float(x) for x in out.split())
    # CFS enforces the quota per 100 ms period; allow one period of slack over the run
    assert cpu_seconds / wall <= quota * 1.1, f"{cpu_seconds:.2f} CPU-s in {wall:.2f} s with a quota of {quota} CPUs"
