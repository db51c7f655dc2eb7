"""Attacks carried out as root inside real bwrap sandboxes; each test says what must hold."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sandboxkit_bwrap import _disk, _registry
from sandboxkit_bwrap._cgroups import CPU_PERIOD_US, CgroupsV2, sandbox_cgroups

from sandboxkit import ErrorCode, Sandbox, SandboxError
from sandboxkit.spi import DEFAULT_CAPS, cap_mask, default_cpu, default_memory_mib

MakeSandbox = Callable[..., Sandbox]


def _wait_for(check: Callable[[], bool], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.2)
    return check()


@pytest.fixture
def host_dir() -> Iterator[Path]:
    """A host directory with a secret file no sandbox may read or change."""
    path = Path(f"/tmp/sbk-bwrap-host-{uuid.uuid4().hex[:8]}")
    path.mkdir()
    (path / "secret").write_text("host secret\n")
    yield path
    for child in path.iterdir():
        child.unlink()
    path.rmdir()


def test_commands_see_the_sandbox_root_not_the_host(make: MakeSandbox, host_dir: Path) -> None:
    sb = make(block_network=True)
    for cwd in ("/", "/tmp", None):
        result = sb.execute(f"cat {host_dir}/secret; cd /; cd ..; ls -a /tmp; pwd", cwd=cwd)
        assert "host secret" not in result.output, f"a command (cwd={cwd}) read a host file"
        assert "\n" + host_dir.name + "\n" not in result.stdout, f"a command (cwd={cwd}) listed the host's /tmp"
        assert result.stdout.endswith("\n/\n"), "cd .. from / stays at the sandbox's root"
    assert sb.execute("pwd", cwd="/tmp").stdout == "/tmp\n"
    assert sb.execute("cat /proc/1/cmdline | tr '\\0' ' '").stdout.startswith("/usr/bin/bwrap"), (
        "PID 1 of the sandbox is bwrap's init, so host PIDs are not visible"
    )
    listed = sb.execute("ls /proc | grep -c '^[0-9]'").stdout.strip()
    assert int(listed) < 10, f"the sandbox sees {listed} processes: it is not in its own pid namespace"


def test_symlinks_do_not_reach_host_files(make: MakeSandbox, host_dir: Path) -> None:
    sb = make(block_network=True)
    sb.execute(f"ln -s {host_dir}/secret /tmp/read-link; ln -s {host_dir}/victim /tmp/write-link", check=True)
    with pytest.raises(SandboxError) as err:
        sb.write_file("/tmp/write-link", "planted")  # its target's directory does not exist inside
    assert err.value.code == ErrorCode.FILE_OPERATION_FAILED
    sb.execute(f"mkdir -p {host_dir}", check=True)  # now it does, inside the sandbox only
    sb.execute(f"ln -s {host_dir} /tmp/dir-link", check=True)
    with pytest.raises(SandboxError) as err:
        sb.read_file("/tmp/read-link")
    assert err.value.code == ErrorCode.FILE_OPERATION_FAILED
    sb.write_file("/tmp/write-link", "planted")
    sb.write_file("/tmp/dir-link/planted", "planted")
    assert not (host_dir / "victim").exists() and not (host_dir / "planted").exists(), "a write escaped"
    assert (host_dir / "secret").read_text() == "host secret\n"
    assert sb.read_file("/tmp/write-link") == b"planted", "the link resolves inside the sandbox"


def test_root_inside_cannot_stop_the_lifetime(make: MakeSandbox) -> None:
    """The supervisor is outside the sandbox's pid namespace: stopping everything inside changes nothing."""
    sb = make(timeout=5, block_network=True)
    assert sb.execute("kill -STOP -1; kill -STOP 1 2; echo stopped", timeout=10).stdout == "stopped\n"
    started = time.monotonic()
    assert _wait_for(lambda: not [i for i in Sandbox.list(provider="bwrap") if i.id == sb.id], 30)
    assert time.monotonic() - started < 25
    with pytest.raises(SandboxError) as err:
        sb.execute("true")
    assert err.value.code == ErrorCode.SANDBOX_NOT_FOUND


def test_the_whole_tree_dies_on_timeout(make: MakeSandbox) -> None:
    sb = make(block_network=True)
    marker = f"77{uuid.uuid4().int % 10000}"
    escape = (
        f"setsid sh -c 'sleep {marker}1' & "
        f"env -i /bin/sh -c 'sleep {marker}2 & exit 0' & "
        f"nohup sh -c '(sleep {marker}3 &) ; exit 0' >/dev/null 2>&1 & "
        "sh -c 'mkdir -p /mnt/c; mount -t cgroup -o freezer none /mnt/c; mkdir -p /mnt/c/out; "
        f"echo $$ > /mnt/c/out/cgroup.procs; exec sleep {marker}5' >/dev/null 2>&1 & "
        f"sleep {marker}4"
    )
    with pytest.raises(SandboxError) as err:
        sb.execute(escape, timeout=2)
    assert err.value.code == ErrorCode.COMMAND_TIMEOUT
    left = sb.execute(f"ps -eo args | grep 'sleep {marker}' | grep -v grep || true").stdout
    assert not left.strip(), f"processes of the timed-out command survived: {left}"


def test_background_processes_outlive_their_command(make: MakeSandbox) -> None:
    """Background processes stay, as on Docker: the sandbox is one long-lived set of namespaces."""
    sb = make(block_network=True)
    sb.execute("sleep 300 >/dev/null 2>&1 &")
    assert "sleep 300" in sb.execute("ps -eo args").stdout
    sb.write_file("/tmp/kept", "kept")
    assert sb.execute("cat /tmp/kept").stdout == "kept"


def test_devices_mounts_and_cgroups_are_out_of_reach(make: MakeSandbox) -> None:
    """Root inside holds only the Docker allow-list of capabilities (no SYS_ADMIN, no MKNOD): none of these."""
    sb = make(block_network=True)
    assert sb.execute("mknod /tmp/disk b 8 0").exit_code != 0, "a block device node was made"
    disks = sb.execute("ls /dev").stdout.split()
    assert not [d for d in disks if d.startswith(("sd", "vd", "nvme", "xvd", "mem", "kmsg"))], disks
    assert sb.execute("mkdir -p /mnt/cg && mount -t cgroup -o memory none /mnt/cg").exit_code != 0
    assert sb.execute("test -e /sys/fs/cgroup/memory").exit_code != 0, "the host's cgroups are visible"
    assert sb.execute("nsenter -t 1 -C true").exit_code != 0, "a command entered another cgroup namespace"
    assert sb.execute("mount -t sysfs sys /mnt").exit_code != 0, "sysfs (the host's devices) was mounted"


#: Root's capabilities in a sandbox (bounding, permitted, effective), as /proc/PID/status shows them: the
#: Docker provider's allow-list, from the same constant.
DOCKER_CAPS = f"{cap_mask(DEFAULT_CAPS):016x}"
#: Each process's capability sets and no_new_privs, one line per process
CAPS = "grep -E '^(CapInh|CapPrm|CapEff|CapBnd|CapAmb|NoNewPrivs)' /proc/{}/status | tr -s '\\t\\n' '  '; echo"


def _caps(line: str) -> dict[str, str]:
    words = line.split()
    return dict(zip((w.rstrip(":") for w in words[::2]), words[1::2], strict=True))


def _is_docker_root(line: str) -> bool:
    sets = _caps(line)
    return sets == {
        "CapInh": "0" * 16,
        "CapPrm": DOCKER_CAPS,
        "CapEff": DOCKER_CAPS,
        "CapBnd": DOCKER_CAPS,
        "CapAmb": "0" * 16,
        "NoNewPrivs": "1",
    }


def test_root_holds_only_the_docker_capability_set_wherever_it_runs(make: MakeSandbox) -> None:
    """Every process root runs (a command, its background and setsid children, a spawned process, a PTY
    command, a busybox root's command) holds the Docker provider's capabilities, no more, and
    no_new_privs; the sandbox's PID 1 holds none."""
    sb = make(block_network=True)
    lines = sb.execute(CAPS.format("self"), check=True).stdout.splitlines()
    sb.execute("sleep 300 >/dev/null 2>&1 & setsid sleep 301 >/dev/null 2>&1 &", check=True)
    for args in ("sleep 300", "sleep 301"):
        found = sb.execute(f"pgrep -xf '{args}'").stdout.split()
        assert found, f"{args} is not running"
        lines += sb.execute(CAPS.format(found[0])).stdout.splitlines()
    spawned = sb.spawn(CAPS.format("self"))
    lines += spawned.wait(timeout=60).stdout.splitlines()
    pty = sb.spawn(CAPS.format("self"), pty=True)
    lines += [line for line in pty.wait(timeout=60).stdout.splitlines() if line.strip()]
    busybox = make(image="sandboxkit/busybox:latest", block_network=True)
    lines += busybox.execute(CAPS.format("self"), check=True).stdout.splitlines()
    assert len(lines) == 6, lines
    for line in lines:
        assert _is_docker_root(line), f"root holds more (or other) than the Docker set {DOCKER_CAPS}: {line}"
    init = _caps(sb.execute(CAPS.format(1), check=True).stdout)
    assert {k: v for k, v in init.items() if k != "NoNewPrivs"} == dict.fromkeys(
        ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"), "0" * 16
    ), f"the sandbox's PID 1 holds capabilities: {init}"


@pytest.mark.parametrize("image", ["sandboxkit/base:bookworm", "sandboxkit/busybox:latest"])
def test_root_cannot_mount_unshare_or_raise_a_dropped_capability(make: MakeSandbox, image: str) -> None:
    sb = make(image=image, block_network=True)
    sb.execute("mkdir -p /mnt/t", check=True)
    for attack in (
        "mount -t tmpfs none /mnt/t",
        "mount -t proc proc /mnt/t",
        "mount -t sysfs sys /mnt/t",
        "mount --bind /tmp /mnt/t",
        "unshare -m true",
        "unshare -n true",
        "unshare -U true",  # a nested user namespace would hold every capability over itself
        "echo 1 > /proc/sys/user/max_user_namespaces",  # a namespaced sysctl, but it needs SYS_RESOURCE
        "ip link add dummy0 type dummy",  # NET_ADMIN
        "nsenter -t 1 -m true",
    ):
        result = sb.execute(attack)
        assert result.exit_code != 0, f"root inside ran `{attack}`: {result.output}"
    assert sb.execute("unshare -U true", user="nobody").exit_code != 0, "a user made a user namespace"
    if image.startswith("sandboxkit/busybox"):
        return
    raise_back = "setpriv --inh-caps +sys_admin --ambient-caps +sys_admin grep CapEff /proc/self/status"
    result = sb.execute(raise_back)
    assert result.exit_code != 0 and "CapEff" not in result.stdout, f"setpriv raised SYS_ADMIN: {result.output}"
    ptrace = sb.execute(
        "su -s /bin/sh nobody -c 'exec sleep 300' & pid=$!; until pgrep -u nobody sleep >/dev/null; do sleep 0.1; done;"
        " cat /proc/$(pgrep -u nobody sleep)/environ >/dev/null && echo TRACED; kill $pid",
        timeout=60,
    )
    assert "TRACED" not in ptrace.stdout, "root read another user's process memory (SYS_PTRACE)"
    raw = sb.execute(["python3", "-c", "import socket; socket.socket(socket.AF_INET, socket.SOCK_RAW, 1)"])
    assert raw.exit_code != 0 and "Operation not permitted" in raw.stderr, f"a raw socket (NET_RAW): {raw.output}"
    # a setuid-root binary does not lift a user back to root's capabilities (no_new_privs, as on Docker)
    sb.execute("cp /usr/bin/cat /tmp/suid-cat && chmod 4755 /tmp/suid-cat", check=True)
    sb.execute("echo secret > /root/only-root && chmod 600 /root/only-root", check=True)
    result = sb.execute("/tmp/suid-cat /root/only-root", user="nobody")
    assert "secret" not in result.stdout and result.exit_code != 0, "a setuid-root binary elevated a user"
    # what root on Docker does still works: chown, other users' files, su to a user
    done = sb.execute(
        "chown nobody:nogroup /tmp/suid-cat && chmod 000 /root/only-root && cat /root/only-root"
        " && su -s /bin/sh nobody -c 'id -u; grep CapEff /proc/self/status'",
    )
    assert done.stdout == "secret\n65534\nCapEff:\t0000000000000000\n", done.output


def test_what_root_does_on_docker_still_works(make: MakeSandbox) -> None:
    """With the Docker set: dpkg/apt install a local package (CHOWN, FOWNER; SETUID/SETGID for apt's
    _apt user), useradd, root stops another user's processes (KILL), as in a Docker sandbox."""
    sb = make(block_network=True)
    control = "Package: sk-hello\nVersion: 1.0\nArchitecture: all\nMaintainer: t <t@example.com>\nDescription: t\n"
    sb.write_file("/tmp/pkg/DEBIAN/control", control)
    sb.write_file("/tmp/pkg/usr/share/sk-hello/greeting", "hello\n")
    sb.execute("dpkg-deb --build /tmp/pkg /tmp/sk-hello.deb", check=True)
    sb.execute("DEBIAN_FRONTEND=noninteractive apt-get install -y /tmp/sk-hello.deb", check=True, timeout=120)
    assert sb.execute("dpkg -s sk-hello | grep Status").stdout.strip() == "Status: install ok installed"
    sb.execute("useradd -m alice && chmod 700 /home/alice && echo from-root > /home/alice/note", check=True)
    killed = sb.execute(
        "su alice -c 'exec sleep 300' & pid=$!; until pgrep -u alice sleep >/dev/null; do sleep 0.1; done; "
        "pkill -KILL -u alice sleep; wait $pid; echo rc=$?",
        timeout=60,
    )
    assert killed.stdout.strip().endswith("rc=137"), killed.output


def test_block_network_is_only_loopback_and_default_is_not_the_hosts(make: MakeSandbox) -> None:
    host_net = os.stat("/proc/self/ns/net").st_ino
    blocked = make(block_network=True)
    ifaces = blocked.execute("tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' '").stdout.split()
    assert ifaces == ["lo"]
    default = make()
    # its first command: create returns before slirp4netns is up, a command waits for it
    assert "0202000A" in default.execute("cat /proc/net/route").stdout, "a default route via slirp4netns"
    ifaces = default.execute("tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' '").stdout.split()
    assert sorted(ifaces) == ["lo", "tap0"], f"the default network is slirp4netns's tap0 only, got {ifaces}"
    inode = default.execute("stat -L -c %i /proc/self/ns/net").stdout.strip()
    assert int(inode) != host_net, "the sandbox shares the host's network namespace"


def test_pids_limit_contains_a_fork_flood(make: MakeSandbox) -> None:
    sb = make(block_network=True, provider_options={"pids_limit": 64})
    current = sandbox_cgroups(sb.id).dir("pids") / "pids.current"
    sb.execute("for i in $(seq 200); do sleep 3 >/dev/null 2>&1 & done 2>/dev/null; true", timeout=60)
    assert int(current.read_text()) <= 64, "more processes run than pids_limit allows"
    assert _wait_for(lambda: _answers(sb), 60), "the sandbox answers again once the flood ends"


def test_cpu_limit_throttles_the_sandbox(make: MakeSandbox) -> None:
    """A busy loop in a ``cpu=0.2`` sandbox is throttled by its cgroup (CFS bandwidth, v1 or v2)."""
    sb = make(cpu=0.2, block_network=True)
    stat = sandbox_cgroups(sb.id).dir("cpu") / "cpu.stat"
    started = time.monotonic()
    sb.execute("timeout 2 sh -c 'while :; do :; done'; true", timeout=60)
    wall = time.monotonic() - started
    stats = {k: int(v) for k, v in (line.split() for line in stat.read_text().splitlines())}
    assert stats["nr_throttled"] > 0, f"the busy loop was never throttled: {stats}"
    if "usage_usec" in stats:  # cgroup v2: the cgroup's own CPU time, at most its quota (one period of slack)
        assert stats["usage_usec"] <= (0.2 * wall + 0.1) * 1e6, (stats, wall)


def _answers(sb: Sandbox) -> bool:
    try:
        return sb.execute("echo alive", timeout=10).stdout == "alive\n"
    except SandboxError:
        return False


def test_memory_limit_oom_is_resource_limit_exceeded(make: MakeSandbox) -> None:
    sb = make(memory_mib=64, block_network=True)
    with pytest.raises(SandboxError) as err:
        sb.execute("python3 -c 'x = bytearray(512 << 20); print(len(x))'", timeout=60)
    assert err.value.code == ErrorCode.RESOURCE_LIMIT_EXCEEDED
    assert sb.execute("echo alive").stdout == "alive\n", "the sandbox survives its command's OOM"


def _cgroup_limits(sandbox_id: str) -> tuple[int, int]:
    """The memory limit (bytes) and CFS quota (us per period) the host holds on a sandbox's cgroups."""
    cgroups = sandbox_cgroups(sandbox_id)
    if isinstance(cgroups, CgroupsV2):
        memory = (cgroups.dir() / "memory.max").read_text()
        quota = (cgroups.dir() / "cpu.max").read_text().split()[0]
    else:
        memory = (cgroups.dir("memory") / "memory.limit_in_bytes").read_text()
        quota = (cgroups.dir("cpu") / "cpu.cfs_quota_us").read_text()
    return int(memory), int(quota)


def test_a_sandbox_that_asks_for_nothing_is_capped_by_the_shared_defaults(make: MakeSandbox) -> None:
    """No ``memory_mib``/``cpu``: the cgroups hold the defaults Docker applies too (``sandboxkit.spi``),
    reported like asked-for limits; the OOM past any memory cap is the test above. Explicit values replace them."""
    memory_mib = default_memory_mib(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    cpu = default_cpu(os.cpu_count() or 1)
    assert memory_mib is not None
    sb = make(block_network=True)
    assert _cgroup_limits(sb.id) == (memory_mib << 20, int(cpu * CPU_PERIOD_US)), "no default cap in the cgroups"
    assert sb.execute("echo $SANDBOXKIT_MEMORY_MIB $SANDBOXKIT_CPU").stdout.split() == [str(memory_mib), f"{cpu:g}"]
    # root inside cannot lift them: it has no cgroupfs
    assert sb.execute("echo max > /sys/fs/cgroup/memory.max").exit_code != 0
    assert _cgroup_limits(sb.id) == (memory_mib << 20, int(cpu * CPU_PERIOD_US))
    asked = make(block_network=True, memory_mib=100, cpu=0.5)
    assert _cgroup_limits(asked.id) == (100 << 20, CPU_PERIOD_US // 2)
    assert asked.execute("echo $SANDBOXKIT_MEMORY_MIB $SANDBOXKIT_CPU").stdout.split() == ["100", "0.5"]


def test_the_hosts_loopback_is_out_of_reach_unless_the_host_network_is_asked_for(make: MakeSandbox) -> None:
    """slirp4netns runs with --disable-host-loopback: 10.0.2.2 does not lead to the host's 127.0.0.1."""
    import socket

    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]
    try:
        probe = f'python3 -c \'import socket; socket.create_connection(("{{}}", {port}), timeout=3); print("open")\''
        user = make()
        assert "open" not in user.execute(probe.format("10.0.2.2"), timeout=30).stdout
        assert "open" not in user.execute(probe.format("127.0.0.1"), timeout=30).stdout
        host = make(provider_options={"network": "host"})
        assert host.execute(probe.format("127.0.0.1"), timeout=30).stdout == "open\n", "network='host' shares it"
    finally:
        server.close()


def test_root_inside_is_not_root_on_the_host(make: MakeSandbox) -> None:
    """uid 0 inside is uid 100000 outside: host-wide sysctls (core_pattern: code run as host root
    on every crash) are out of reach, whatever root inside does to its own mounts."""
    sb = make(block_network=True)
    assert sb.execute("cat /proc/self/uid_map").stdout.split() == ["0", "100000", "65536"]
    current = Path("/proc/sys/kernel/core_pattern").read_text().strip()  # written back unchanged if it leaks
    attack = f"umount /proc/sys 2>/dev/null; echo '{current}' > /proc/sys/kernel/core_pattern && echo WROTE"
    assert "WROTE" not in sb.execute(attack).stdout, "root inside wrote a host-wide sysctl"
    assert sb.execute("mount -t proc proc /mnt && echo '60' > /mnt/sys/vm/swappiness && echo WROTE").stdout == ""
    sb.execute("echo made > /tmp/owned", check=True)
    supervisor = _registry.ready_state(_registry.load(sb.id))["supervisor_pid"]  # type: ignore[arg-type,index]
    upper, _ = _disk.layer_dirs(_registry.sandboxes_dir() / sb.id, True)  # mounted in the supervisor's namespace
    assert Path(f"/proc/{supervisor}/root{upper}/tmp/owned").stat().st_uid == 100000, (
        "files root inside makes belong to uid 100000 on the host"
    )


def test_a_non_root_user_holds_no_capabilities(make: MakeSandbox) -> None:
    sb = make(block_network=True)
    sb.execute("echo secret > /root/only-root && chmod 600 /root/only-root", check=True)
    result = sb.execute("id -u; grep CapEff /proc/self/status; cat /root/only-root", user="nobody")
    assert result.stdout.startswith("65534\nCapEff:\t0000000000000000\n")
    assert "secret" not in result.stdout and result.exit_code != 0
    with pytest.raises(SandboxError) as err:
        sb.execute("id", user="no-such-user")
    assert err.value.code == ErrorCode.INVALID_ARGUMENT


def test_other_host_users_cannot_list_or_read_the_registry(make: MakeSandbox) -> None:
    sb = make(block_network=True, env={"CREATE_TIME": "not for other users"})
    root = Path("/var/lib/sandboxkit/bwrap")
    for path in (root, root / "sandboxes", root / "sandboxes" / sb.id):
        assert path.stat().st_mode & 0o777 == 0o711, f"{path} is listable by other users"
    for name in ("record.json", "supervisor.log"):
        assert (root / "sandboxes" / sb.id / name).stat().st_mode & 0o777 == 0o600


def test_the_command_agent_is_out_of_the_sandboxes_reach(make: MakeSandbox) -> None:
    """The agent that starts commands lives outside the sandbox's pid namespace and mounts: root inside
    can neither see, stop nor reach it, and a command's own output cannot forge its exit status."""
    sb = make(block_network=True)
    seen = sb.execute("ls -l /proc/[0-9]*/exe 2>&1; find / -xdev -type s 2>/dev/null; cat /proc/net/unix").stdout
    assert "agent" not in seen, f"the agent is visible inside: {seen}"
    sock = Path(f"/var/lib/sandboxkit/bwrap/sandboxes/{sb.id}/agent.sock")
    assert sock.is_socket() and sock.stat().st_mode & 0o077 == 0, "other host users can connect to the agent"
    assert sb.execute("kill -STOP -1; kill -STOP 1 2; echo done", timeout=10).stdout == "done\n"
    forged = sb.execute("for f in /proc/self/fd/*; do echo 0 > $f; done 2>/dev/null; exit 5")
    assert forged.exit_code == 5, "a command forged its exit status through the streams it holds"
    assert sb.execute("echo alive; exit 7").exit_code == 7, "commands run after everything inside was stopped"
    assert sb.execute("umask").stdout == "0022\n", "commands get the usual umask, not the agent's"
