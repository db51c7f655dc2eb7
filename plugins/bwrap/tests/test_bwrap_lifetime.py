"""Lifetimes without the client, the registry, gc, root filesystems, and hosts the provider refuses."""

from __future__ import annotations

import concurrent.futures
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from sandboxkit_bwrap import _cgroups, _host, _native, _registry, _rootfs, _supervisor

from sandboxkit import ErrorCode, Sandbox, SandboxError

MakeSandbox = Callable[..., Sandbox]
SANDBOXKIT = str(Path(sys.executable).with_name("sandboxkit"))

CLIENT = """
import time
from sandboxkit import Sandbox
short = Sandbox.create(provider="bwrap", timeout=4, block_network=True)
long = Sandbox.create(provider="bwrap", timeout=300, block_network=True)
long.execute("echo kept > /tmp/mark")
print(short.id, long.id, flush=True)
time.sleep(600)
"""


def _wait_for(check: Callable[[], bool], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.2)
    return check()


def _listed(sandbox_id: str) -> bool:
    return any(info.id == sandbox_id for info in Sandbox.list(provider="bwrap"))


def test_sandboxes_outlive_a_killed_client_and_still_end_on_time() -> None:
    client = subprocess.Popen([sys.executable, "-c", CLIENT], stdout=subprocess.PIPE, text=True)
    try:
        assert client.stdout is not None
        short_id, long_id = client.stdout.readline().split()
    finally:
        client.send_signal(signal.SIGKILL)
        client.wait()
    long = Sandbox.from_id(long_id, provider="bwrap")
    try:
        assert long.execute("cat /tmp/mark").stdout == "kept\n", "another client reaches the same sandbox"
        assert _wait_for(lambda: not _listed(short_id), 30), "the dead client's short sandbox outlived its timeout"
        with pytest.raises(SandboxError) as err:
            Sandbox.from_id(short_id, provider="bwrap")
        assert err.value.code == ErrorCode.SANDBOX_NOT_FOUND
    finally:
        long.close()
    assert not _listed(long_id)


def test_a_killed_supervisor_takes_its_sandbox_and_gc_cleans_up(make: MakeSandbox) -> None:
    sb = make(block_network=True)
    record = _registry.load(sb.id)
    assert record is not None
    ready = _registry.ready_state(record)
    assert ready is not None
    os.kill(int(ready["supervisor_pid"]), signal.SIGKILL)
    assert _wait_for(lambda: not _listed(sb.id), 10)
    with pytest.raises(SandboxError) as err:
        sb.execute("true")
    assert err.value.code == ErrorCode.SANDBOX_NOT_FOUND, "bwrap dies with its supervisor"
    gc = subprocess.run([SANDBOXKIT, "gc", "--provider", "bwrap"], capture_output=True, text=True, timeout=60)
    assert gc.returncode == 0, gc.stderr
    assert _wait_for(lambda: not record.dir.exists(), 10), "gc removes the dead sandbox's registry entry"
    assert not any(d.exists() for d in _cgroups.sandbox_cgroups(sb.id).all_dirs), "gc removes its cgroups"


def test_close_kills_everything_and_removes_the_cgroups(make: MakeSandbox) -> None:
    sb = make(block_network=True)
    sb.execute("setsid sleep 300 >/dev/null 2>&1 & sleep 301 >/dev/null 2>&1 &")
    cgroups = _cgroups.sandbox_cgroups(sb.id)
    pids = [p for d in cgroups.all_dirs for p in _supervisor.cgroup_pids(str(d))]
    assert len(pids) >= 3, "PID 1 and the background sleeps are in the sandbox's cgroups"
    sb.close()
    assert _wait_for(lambda: not any(d.exists() for d in cgroups.all_dirs), 30), "close leaves a cgroup"
    assert _wait_for(lambda: not any(_supervisor.starttime(p) for p in pids), 10), "close leaves a process"


def test_the_freezing_kill_empties_a_command_cgroup() -> None:
    """The whole-tree kill where there is no ``cgroup.kill`` (v1; v2 before Linux 5.14): freeze, SIGKILL, thaw."""
    cgroups = _cgroups.sandbox_cgroups("fedcba9876543210")
    cgroups.create(memory_mib=None, cpu=None, pids_limit=256)
    try:
        command = cgroups.new_command()

        def join() -> None:
            for procs in command.procs:
                Path(procs).write_text("0")

        tree = "for i in 1 2 3 4; do (while :; do sleep 0.01; done) & done; setsid sh -c 'sleep 300' & wait"
        proc = subprocess.Popen(["sh", "-c", tree], preexec_fn=join, stdout=subprocess.DEVNULL)
        assert _wait_for(lambda: len(command.pids()) >= 6, 30), command.pids()
        command._freeze_and_kill()
        assert command.pids() == [], "a member survived"
        assert proc.wait(10) == -signal.SIGKILL
        command.remove()
        assert not command.path.exists()
    finally:
        dirs = [str(d) for d in cgroups.all_dirs]
        _supervisor.kill_cgroups(dirs)
        _supervisor.remove_cgroups(dirs)


def test_a_sandbox_whose_agent_does_not_answer_says_so(make: MakeSandbox) -> None:
    """A running sandbox with no agent to reach (started by another version, or its agent killed from
    the host) refuses commands with a SandboxError that says what to do, not a bare OSError."""
    sb = make(block_network=True)
    assert sb.execute("echo up").stdout == "up\n"
    record = _registry.load(sb.id)
    assert record is not None
    (record.dir / "agent.sock").unlink()
    with pytest.raises(SandboxError) as err:
        sb.execute("true")
    assert err.value.code == ErrorCode.SANDBOX_NOT_FOUND
    assert "command agent does not answer" in err.value.message and "create a new one" in err.value.message
    assert _listed(sb.id), "the sandbox itself still runs; close() ends it"


def test_a_busybox_directory_is_a_root(make: MakeSandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """image= takes a root filesystem directory; a busybox root has no python and still works."""
    monkeypatch.setenv("SANDBOXKIT_ROOTFS_DIR", str(tmp_path / "cache"))  # its copy goes with tmp_path
    busybox = shutil.which("busybox")
    assert busybox is not None, "scripts/setup.sh installs busybox-static"
    root = tmp_path / "rootfs"
    (root / "bin").mkdir(parents=True)
    shutil.copy2(busybox, root / "bin" / "busybox")
    for applet in ("sh", "cat", "echo", "mkdir", "ls", "sleep", "ps", "test"):
        (root / "bin" / applet).symlink_to("busybox")
    for d in ("tmp", "proc", "dev", "etc"):
        (root / d).mkdir()
    sb = make(image=str(root), block_network=True)
    assert sb.execute("echo from busybox; ls /bin | wc -l").stdout.startswith("from busybox\n")
    sb.write_file("/tmp/a/b.txt", b"\x00bytes")
    assert sb.read_file("/tmp/a/b.txt") == b"\x00bytes"
    assert not (root / "tmp" / "a").exists(), "writes land in the sandbox's own layer, not in the image"
    assert list((tmp_path / "cache").glob("dir*/rootfs/bin/busybox")), "the directory is kept as a copy"


def test_runs_without_a_docker_engine(tmp_path: Path) -> None:
    """With the default image's rootfs kept, nothing asks Docker: point DOCKER_HOST nowhere."""
    _rootfs.resolve(None)  # exported (or bootstrapped) once
    env = {**os.environ, "DOCKER_HOST": f"unix://{tmp_path}/no-docker.sock", "SANDBOXKIT_PROVIDER": "bwrap"}
    run = subprocess.run(
        [SANDBOXKIT, "run", "--", "python3", "-c", "print(1)"], capture_output=True, text=True, env=env, timeout=120
    )
    assert (run.returncode, run.stdout) == (0, "1\n"), run.stderr


def test_a_missing_image_says_how_to_get_one(make: MakeSandbox, tmp_path: Path) -> None:
    with pytest.raises(SandboxError) as err:
        make(image=str(tmp_path / "nothing"), block_network=True)
    assert err.value.code == ErrorCode.SANDBOX_CREATION_FAILED
    assert "root filesystem directory" in str(err.value)
    before = set(os.listdir(_registry.sandboxes_dir()))
    with pytest.raises(SandboxError) as err:
        make(image="sandboxkit/never-built:1", block_network=True)
    assert err.value.code == ErrorCode.SANDBOX_CREATION_FAILED
    assert "sandboxkit images bootstrap" in str(err.value)
    assert set(os.listdir(_registry.sandboxes_dir())) <= before, "a failed create leaves no registry entry"


def test_hosts_without_what_it_needs_are_provider_unavailable(monkeypatch: pytest.MonkeyPatch) -> None:
    _host.probe.cache_clear()
    real_which = shutil.which
    monkeypatch.setattr(shutil, "which", lambda tool: None if tool == "bwrap" else real_which(tool))
    try:
        with pytest.raises(SandboxError) as err:
            Sandbox.create(provider="bwrap", block_network=True)
        assert err.value.code == ErrorCode.PROVIDER_UNAVAILABLE
        assert "bubblewrap" in str(err.value)
    finally:
        _host.probe.cache_clear()


def test_the_helpers_are_built_once_and_a_host_without_a_compiler_is_told_how(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("SANDBOXKIT_BWRAP_DIR", str(tmp_path))  # no agent built there yet
    real_which = shutil.which
    monkeypatch.setattr(shutil, "which", lambda tool: None if tool in ("cc", "gcc") else real_which(tool))
    _native.binary.cache_clear()
    try:
        with pytest.raises(SandboxError) as err:
            Sandbox.create(provider="bwrap", block_network=True)
        assert err.value.code == ErrorCode.PROVIDER_UNAVAILABLE
        assert "apt-get install gcc" in str(err.value)
        assert not (tmp_path / "sandboxes").exists(), "a refused create leaves no registry entry"
        monkeypatch.setattr(shutil, "which", real_which)
        for name in ("agent", "launch"):
            built = Path(_native.binary(name))
            assert built.parent == tmp_path / "bin" and os.access(built, os.X_OK)
            assert _native.binary(name) == str(built)
    finally:
        _native.binary.cache_clear()


def test_cgroup_checks_name_what_is_missing(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    reason = str(_cgroups.unavailable_reason())
    assert "cgroup v1, which has no safe delegation" in reason and "run it as root, or on a cgroup v2 host" in reason
    monkeypatch.setattr(_cgroups, "ROOT", tmp_path)
    assert "memory, cpu, pids, freezer" in str(_cgroups.unavailable_reason())
    (tmp_path / "cgroup.controllers").write_text("cpu memory pids\n")
    reason = str(_cgroups.unavailable_reason())  # this process's cgroup (v1 here: "0::/") is delegated to nobody
    assert "is delegated to uid 1000" in reason and "systemd-run --user --scope -p Delegate=yes" in reason
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    (tmp_path / "cgroup.controllers").write_text("cpu io\n")  # cgroup v2 without memory and pids
    reason = str(_cgroups.unavailable_reason())
    assert "cgroup v2" in reason and "memory, pids" in reason and "systemd.unified_cgroup_hierarchy=1" in reason
    (tmp_path / "cgroup.controllers").write_text("cpu memory pids\n")
    assert _cgroups.unavailable_reason() is None
    assert isinstance(_cgroups.sandbox_cgroups("x"), _cgroups.CgroupsV2)


def test_images_bootstrap_keeps_a_rootfs_without_any_engine(
    make: MakeSandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`sandboxkit images bootstrap` keeps the rootfs where the provider looks, even with no Docker."""
    from sandboxkit_docker.images import rootfs_dir

    monkeypatch.setenv("SANDBOXKIT_ROOTFS_DIR", str(tmp_path / "cache"))
    for tag in ("sandboxkit/busybox:latest", "sandboxkit/base:bookworm", "x"):
        assert rootfs_dir(tag) == _rootfs.cache_dir(tag), "the two plugins agree on where rootfs are kept"
    env = {**os.environ, "DOCKER_HOST": f"unix://{tmp_path}/no-docker.sock"}
    boot = subprocess.run(
        [SANDBOXKIT, "images", "bootstrap", "--kind", "busybox"], capture_output=True, text=True, env=env, timeout=120
    )
    assert boot.returncode == 0, boot.stderr
    assert (_rootfs.cache_dir("sandboxkit/busybox:latest") / "rootfs" / "bin" / "busybox").exists()
    monkeypatch.setenv("DOCKER_HOST", env["DOCKER_HOST"])
    sb = make(image="sandboxkit/busybox:latest", block_network=True)
    assert sb.execute("echo $PATH").stdout == "/bin:/sbin:/usr/bin\n", "the image's env comes with it"


def test_gc_removes_cgroups_and_entries_nobody_owns() -> None:
    orphan = "0123456789abcdef"
    cgroups = _cgroups.sandbox_cgroups(orphan)
    cgroups.create(memory_mib=None, cpu=None, pids_limit=64)
    half_removed = _registry.sandboxes_dir() / f"{orphan}.gone"
    (half_removed / "upper").mkdir(parents=True)
    gc = subprocess.run([SANDBOXKIT, "gc", "--provider", "bwrap"], capture_output=True, text=True, timeout=60)
    assert gc.returncode == 0, gc.stderr
    assert not any(d.exists() for d in cgroups.all_dirs), "gc removes cgroups with no registry entry"
    assert not half_removed.exists()


def test_background_processes_do_not_keep_an_idle_sandbox_alive(make: MakeSandbox) -> None:
    """As on Docker: idle means no command running; what a command left in the background is not one."""
    sb = make(idle_timeout=3, timeout=300, block_network=True)
    sb.execute("sleep 300 >/dev/null 2>&1 &")
    assert sb.execute("sleep 5; echo busy", timeout=60).stdout == "busy\n", "a running command is activity"
    started = time.monotonic()
    assert _wait_for(lambda: not _listed(sb.id), 60), "the idle sandbox still runs"
    assert time.monotonic() - started >= 2


def test_the_agent_and_the_network_start_with_the_first_command(make: MakeSandbox) -> None:
    """create starts neither the command agent nor slirp4netns; the first commands (here several at
    once, from two handles) start them once and all find the network up."""
    sb = make(timeout=120)
    record = _registry.load(sb.id)
    assert record is not None
    assert not (record.dir / "agent.sock").exists(), "create started the command agent"
    other = Sandbox.from_id(sb.id, provider="bwrap")
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda s: s.execute("grep -c tap0 /proc/net/dev"), [sb, other, sb, other]))
    assert [(r.exit_code, r.stdout) for r in results] == [(0, "1\n")] * 4, results
    assert (record.dir / "agent.sock").is_socket()
    sandbox_pids = _supervisor.cgroup_pids(str(_cgroups.sandbox_cgroups(sb.id).dir("pids")))
    ready = _registry.ready_state(record)
    assert ready is not None and ready["init_pid"] in sandbox_pids, "PID 1 joined the sandbox's cgroups"
