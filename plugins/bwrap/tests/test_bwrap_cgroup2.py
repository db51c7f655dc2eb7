"""The bwrap provider on a cgroup-v2-only kernel: a guest VM runs the cgroup tests of this directory.

This host is cgroup v1, so a QEMU guest boots Debian's own kernel with ``cgroup_no_v1=all`` (only
cgroup2 mounted, at ``/sys/fs/cgroup``) over this host's root, read-only with a tmpfs overlay
(see ``_vm``), and runs :data:`GUEST_TESTS` there with pytest: limits, OOM, whole-tree kill,
spawned processes, close and gc, and that root holds only the Docker provider's capabilities (no
mount of sysfs, say) on that older kernel too (about 100 s with QEMU's TCG, see ``_vm.ACCEL``). Nothing of the
guest reaches the host's cgroups or network (it has no network device; every test uses
``block_network=True``).
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
import _vm

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[3]
#: With the capability tests: on Debian's 6.1 kernel root inside a sandbox holding every capability of
#: its user namespace could mount a sysfs of its own (this host's newer kernel refuses it regardless).
GUEST_TESTS = [
    "test_bwrap_containment.py::test_devices_mounts_and_cgroups_are_out_of_reach",
    "test_bwrap_containment.py::test_root_holds_only_the_docker_capability_set_wherever_it_runs",
    "test_bwrap_containment.py::test_the_whole_tree_dies_on_timeout",
    "test_bwrap_containment.py::test_pids_limit_contains_a_fork_flood",
    "test_bwrap_containment.py::test_memory_limit_oom_is_resource_limit_exceeded",
    "test_bwrap_containment.py::test_cpu_limit_throttles_the_sandbox",
    "test_bwrap_lifetime.py::test_close_kills_everything_and_removes_the_cgroups",
    "test_bwrap_lifetime.py::test_gc_removes_cgroups_and_entries_nobody_owns",
    "test_bwrap_lifetime.py::test_the_freezing_kill_empties_a_command_cgroup",
    "test_bwrap_processes.py::test_a_spawned_process_runs_inside_the_sandbox_and_ends_with_it",
]
#: the guest's hard limit (boot, tests, power-off), seconds
VM_TIMEOUT = 360


def _script() -> str:
    tests = " ".join(f"plugins/bwrap/tests/{t}" for t in GUEST_TESTS)
    return f"""
set -u
cd {REPO}
export HOME=/root PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin PYTHONDONTWRITEBYTECODE=1
v2=$(cat /sys/fs/cgroup/cgroup.controllers)
echo "GUEST-CGROUPS: $(grep -c ' cgroup ' /proc/mounts) v1 mounts; v2 controllers: $v2"
.venv/bin/python -m pytest -q --color=no -p no:cacheprovider -o addopts= {tests}
rc=$?
echo "GUEST-LEFT: [$(find /sys/fs/cgroup/sandboxkit -mindepth 1 -type d 2>/dev/null)]"
exit $rc
"""


@pytest.mark.timeout(VM_TIMEOUT + 60)  # the guest's own limit ends it first (pytest's default is 300 s)
def test_the_cgroup_tests_pass_on_a_cgroup_v2_only_kernel() -> None:
    reason = _vm.unavailable_reason()
    if reason is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"the cgroup v2 lane needs a guest VM: {reason}")
        pytest.skip(reason)
    guest = _vm.run(_script(), timeout=VM_TIMEOUT, keep=str(REPO))
    out = guest.output
    print(out[-20000:])  # shown on failure
    print(f"[host] guest: {guest.seconds:.1f} s in all, booted in {guest.boot_seconds} s")
    cgroups = re.search(r"^GUEST-CGROUPS: (\d+) v1 mounts; v2 controllers: (.*)$", out, re.M)
    assert cgroups is not None, "the guest never ran its script"
    assert cgroups.group(1) == "0" and {"memory", "cpu", "pids"} <= set(cgroups.group(2).split()), cgroups.group(0)
    summary = re.search(r"^=*\s*(\d+) passed(.*) in [\d.]+s", out, re.M)
    assert guest.rc == 0 and summary is not None, f"the guest's pytest failed (rc {guest.rc})"
    assert int(summary.group(1)) == len(GUEST_TESTS) and "skipped" not in summary.group(2), summary.group(0)
    assert "GUEST-LEFT: []" in out, "the guest's tests left sandbox cgroups behind"
