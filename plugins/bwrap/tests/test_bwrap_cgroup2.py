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
    "test_bwrap_containment.py::test_a_sandbox_that_asks_for_nothing_is_capped_by_the_shared_defaults",
    "test_bwrap_containment.py::test_cpu_limit_throttles_the_sandbox",
    "test_bwrap_lifetime.py::test_close_kills_everything_and_removes_the_cgroups",
    "test_bwrap_lifetime.py::test_gc_removes_cgroups_and_entries_nobody_owns",
    "test_bwrap_lifetime.py::test_the_freezing_kill_empties_a_command_cgroup",
    "test_bwrap_processes.py::test_a_spawned_process_runs_inside_the_sandbox_and_ends_with_it",
]
#: Then, in the same guest, the rootless tests as a non-root user (all but the host's root-only ones).
ROOTLESS_FILE = "test_bwrap_rootless.py"
ROOTLESS_DESELECT = [
    "test_bwrap_rootless.py::test_a_non_root_client_on_cgroup_v1_is_refused_saying_why",
    "test_bwrap_rootless.py::test_a_cache_entry_records_its_shift_and_refuses_ids_the_user_cannot_map",
]
ROOTLESS_PASSED = 14
#: the rootless user's uid and subordinate ids (not 100000, root mode's shift), and its delegated cgroup
RL_UID, RL_SUBID, RL_CGROUP = 1000, 200000, "/sys/fs/cgroup/rootless-delegated"
#: the guest's hard limit (boot, tests, power-off), seconds
VM_TIMEOUT = 600


def _script() -> str:
    tests = " ".join(f"plugins/bwrap/tests/{t}" for t in GUEST_TESTS)
    deselect = " ".join(f"--deselect plugins/bwrap/tests/{t}" for t in ROOTLESS_DESELECT)
    return f"""
set -u
cd {REPO}
export HOME=/root PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin PYTHONDONTWRITEBYTECODE=1
v2=$(cat /sys/fs/cgroup/cgroup.controllers)
echo "GUEST-CGROUPS: $(grep -c ' cgroup ' /proc/mounts) v1 mounts; v2 controllers: $v2"
.venv/bin/python -m pytest -q --color=no -p no:cacheprovider -o addopts= {tests}
rc=$?
echo "GUEST-LEFT: [$(find /sys/fs/cgroup/sandboxkit -mindepth 1 -type d 2>/dev/null)]"
# rootless: a user with subordinate ids (uid {RL_UID}, the host's name for it if it has one) and a
# cgroup delegated to it as systemd's Delegate=yes leaves one (controllers enabled by its parent;
# it and its cgroup.procs, cgroup.subtree_control and cgroup.threads chowned to the user)
name=$(getent passwd {RL_UID} | cut -d: -f1)
if [ -z "$name" ]; then
  name=rl
  echo "rl:x:{RL_UID}:{RL_UID}:rootless:/home/rl:/bin/sh" >> /etc/passwd
  echo "rl:x:{RL_UID}:" >> /etc/group
fi
echo "$name:{RL_SUBID}:65536" > /etc/subuid
echo "$name:{RL_SUBID}:65536" > /etc/subgid
for tool in newuidmap newgidmap; do  # setuid root: kept over 9p? else a copy in the guest's tmpfs
  path=$(command -v $tool)
  [ -u "$path" ] && continue
  echo "GUEST-NOTE: $path lost its setuid bit" && cp "$path" /usr/local/bin/ && chmod 4755 /usr/local/bin/$tool
done
chmod 666 /dev/net/tun  # as udev's default rules do (the guest has no udev): slirp4netns opens it as the user
# the guest's copy only (copy-up into its tmpfs): the user must reach this checkout and the venv's
# python wherever they are (a clone under a 0700 directory, an interpreter under /root)
for p in {REPO} "$(dirname "$(readlink -f .venv/bin/python)")"; do
  while [ "$p" != / ]; do chmod o+x "$p"; p=$(dirname "$p"); done
done
chmod o+rx {REPO}
home=/tmp/rootless-home
# a tmpfs of its own: the user's state holds overlay upper directories, which may not live on the
# guest's root overlay (where /tmp is when the checkout is under /tmp and kept visible)
mkdir -p $home && mount -t tmpfs -o size=1g rootless-home $home && chown {RL_UID}:{RL_UID} $home && chmod 700 $home
echo "+memory +cpu +pids" > /sys/fs/cgroup/cgroup.subtree_control
d={RL_CGROUP}
mkdir -p $d && chown {RL_UID}:{RL_UID} $d $d/cgroup.procs $d/cgroup.subtree_control $d/cgroup.threads
echo GUEST-ROOTLESS-BEGIN
sh -c 'echo $$ > {RL_CGROUP}/cgroup.procs && exec setpriv --reuid {RL_UID} --regid {RL_UID} --init-groups \
  env HOME='$home' SANDBOXKIT_TEST_SUBUID={RL_SUBID} .venv/bin/python -m pytest -q --color=no -p no:cacheprovider \
  -o addopts= plugins/bwrap/tests/{ROOTLESS_FILE} {deselect}'
rl_rc=$?
echo "GUEST-ROOTLESS-LEFT: [$(find {RL_CGROUP}/sandboxkit -mindepth 1 -type d 2>/dev/null)]"
[ $rc -eq 0 ] && rc=$rl_rc
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
    root, _, rootless = out.partition("GUEST-ROOTLESS-BEGIN")
    summary = re.search(r"^=*\s*(\d+) passed(.*) in [\d.]+s", root, re.M)
    assert summary is not None, f"the guest's pytest failed (rc {guest.rc})"
    assert int(summary.group(1)) == len(GUEST_TESTS) and "skipped" not in summary.group(2), summary.group(0)
    assert "GUEST-LEFT: []" in out, "the guest's tests left sandbox cgroups behind"
    summary = re.search(r"^=*\s*(\d+) passed(.*) in [\d.]+s", rootless, re.M)
    assert guest.rc == 0 and summary is not None, f"the guest's rootless pytest failed (rc {guest.rc})"
    assert int(summary.group(1)) == ROOTLESS_PASSED, summary.group(0)
    assert not re.search(r"skipped|failed|error", summary.group(2)), summary.group(0)
    assert "GUEST-ROOTLESS-LEFT: []" in out, "the rootless tests left sandbox cgroups behind"
