"""The seccomp filter, attacked as root inside real bwrap sandboxes (and compared with Docker's).

Root inside a bwrap sandbox holds the capabilities of the sandbox's user namespace; without the
filter a command could make a nested user namespace and have every capability again (mounts,
new network devices...). Each probe makes the raw system call (x86-64 numbers) with harmless
arguments and prints the errno: a refused call is EPERM (ENOSYS for clone3), an allowed one
fails otherwise (EFAULT, EINVAL, EBADF) or succeeds.
"""

from __future__ import annotations

import json
import platform
from collections.abc import Callable

import pytest

from sandboxkit import Sandbox

MakeSandbox = Callable[..., Sandbox]

pytestmark = pytest.mark.skipif(platform.machine() != "x86_64", reason="the probes use x86-64 syscall numbers")

#: name -> (syscall number on x86-64, arguments): calls a contained root must not make
PROBES = {
    "unshare(CLONE_NEWUSER)": (272, [0x10000000]),
    "unshare(CLONE_NEWNS)": (272, [0x00020000]),
    "unshare(CLONE_NEWNET)": (272, [0x40000000]),
    "clone(CLONE_NEWUSER)": (56, [0x10000000 | 17, 0, 0, 0, 0]),
    "clone3": (435, [0, 0]),
    "setns": (308, [-1, 0]),
    "mount": (165, [0, 0, 0, 0, 0]),
    "umount2": (166, [0, 0]),
    "pivot_root": (155, [0, 0]),
    "fsopen": (430, [0, 0]),
    "open_tree": (428, [-1, 0, 0]),
    "keyctl": (250, [0, 0, 0]),
    "add_key": (248, [0, 0, 0, 0, 0]),
    "bpf": (321, [0, 0, 0]),
    "perf_event_open": (298, [0, 0, -1, -1, 0]),
    "userfaultfd": (323, [0]),
    "open_by_handle_at": (304, [-1, 0, 0]),
    "init_module": (175, [0, 0, 0]),
    "kexec_load": (246, [0, 0, 0, 0]),
    "reboot": (169, [0, 0, 0, 0]),
    "swapon": (167, [0, 0]),
    "clock_settime": (227, [0, 0]),
    "syslog": (103, [0, 0, 0]),
    "iopl": (172, [0]),
}

PROBE_SCRIPT = """
import ctypes, errno, json, sys
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
out = {}
for name, (nr, args) in json.loads(sys.argv[1]).items():
    ctypes.set_errno(0)
    rc = libc.syscall(ctypes.c_long(nr), *[ctypes.c_long(a) for a in args])
    out[name] = "ok" if rc >= 0 else errno.errorcode.get(ctypes.get_errno(), str(ctypes.get_errno()))
print(json.dumps(out))
"""


def _probe(sandbox: Sandbox) -> dict[str, str]:
    result = sandbox.execute(["python3", "-c", PROBE_SCRIPT, json.dumps(PROBES)], timeout=60)
    assert result.exit_code == 0, result.stderr
    outcome: dict[str, str] = json.loads(result.stdout)
    return outcome


def test_root_inside_cannot_make_namespaces_mount_or_reach_kernel_interfaces(make: MakeSandbox) -> None:
    sb = make(block_network=True)
    assert sb.execute("id -u").stdout.strip() == "0"
    outcome = _probe(sb)
    allowed = {name: got for name, got in outcome.items() if got not in ("EPERM", "ENOSYS")}
    assert not allowed, f"root inside made these calls (errno other than EPERM/ENOSYS): {allowed}"
    assert outcome["clone3"] == "ENOSYS", "clone3 must answer ENOSYS so libc falls back to clone"
    # the tools too: no nested user namespace hands the capabilities back, no mount, no setns
    for attack in (
        "unshare -Ur true",
        "unshare -Urm sh -c 'mount -t tmpfs t /mnt'",
        "unshare -m true",
        "mount -t tmpfs t /mnt",
        "mount -t proc p /mnt",
        "nsenter -t 1 -m true",
        "python3 -c 'import os; os.unshare(os.CLONE_NEWUSER)'",
    ):
        result = sb.execute(attack)
        assert result.exit_code != 0, f"{attack!r} worked as root inside: {result.stdout}{result.stderr}"


def test_every_process_in_the_sandbox_is_filtered(make: MakeSandbox) -> None:
    """PID 1 (bwrap), commands, what they leave behind, spawned processes, another user's commands."""
    sb = make(block_network=True)
    sb.execute("sleep 300 >/dev/null 2>&1 &")
    process = sb.spawn("exec sleep 300")
    try:
        pids = sb.execute("pgrep -x sleep").stdout.split()
        assert len(pids) == 2, pids
        for pid in ["1", "self", *pids]:
            status = sb.execute(f"grep '^Seccomp:' /proc/{pid}/status").stdout.split()
            assert status == ["Seccomp:", "2"], f"process {pid} runs without the filter: {status}"
        as_nobody = sb.execute("grep '^Seccomp:' /proc/self/status", user="nobody").stdout.split()
        assert as_nobody == ["Seccomp:", "2"]
    finally:
        process.kill()


def test_ordinary_work_still_runs(make: MakeSandbox) -> None:
    """Threads, fork, background jobs, pipes and ptrace of its own child are not refused (chroot is, by the
    capabilities: SYS_CHROOT is not among the Docker provider's, which root keeps here too)."""
    sb = make(block_network=True)
    script = (
        "import os, threading, subprocess\n"
        "t = threading.Thread(target=lambda: None); t.start(); t.join()\n"
        "pid = os.fork()\n"
        "os._exit(0) if pid == 0 else os.waitpid(pid, 0)\n"
        "run = subprocess.run(['sh', '-c', 'sleep 0.1 & wait; echo piped | cat'], capture_output=True, text=True)\n"
        "print(run.stdout)\n"
    )
    result = sb.execute(["python3", "-c", script])
    assert (result.exit_code, result.stdout.strip()) == (0, "piped"), result.stderr
    jailed = sb.execute(
        "python3 -c \"import os; os.makedirs('/tmp/jail'); os.chroot('/tmp/jail'); print(os.listdir('/'))\""
    )
    assert jailed.exit_code != 0 and "Operation not permitted" in jailed.stderr, jailed.output
    traced = sb.execute('python3 -c "import ctypes; print(ctypes.CDLL(None).ptrace(0, 0, 0, 0))"')
    assert traced.stdout.strip() == "0", traced.stderr  # PTRACE_TRACEME: allowed, as on Docker


@pytest.mark.usefixtures("docker_engine")
def test_it_refuses_at_least_what_docker_refuses(make: MakeSandbox) -> None:
    """The same probes in a Docker sandbox (its default profile) and a bwrap one: bwrap refuses a superset."""
    with Sandbox.create(provider="docker", image="sandboxkit/base:bookworm", block_network=True) as docker_sb:
        on_docker = _probe(docker_sb)
    on_bwrap = _probe(make(block_network=True))
    refused_by_docker = {name for name, got in on_docker.items() if got in ("EPERM", "ENOSYS")}
    assert refused_by_docker, f"Docker refused none of the probes: {on_docker}"
    missed = {name: on_bwrap[name] for name in refused_by_docker if on_bwrap[name] not in ("EPERM", "ENOSYS")}
    assert not missed, f"Docker refuses these, bwrap does not: {missed}"
