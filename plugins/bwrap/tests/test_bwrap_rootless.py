"""The bwrap provider for a non-root client (rootless: its subordinate ids, a delegated cgroup v2).

This host is cgroup v1 and its tests run as root, so the sandbox tests here run in the cgroup v2
guest of ``test_bwrap_cgroup2.py``, as a user made there (uid 1000, subordinate ids from 200000,
a cgroup delegated to it as systemd's ``Delegate=yes`` leaves one); elsewhere they skip. The
refusal of a non-root client on a cgroup v1 host runs here, as ``nobody``.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from sandboxkit_bwrap import _cgroups, _host, _registry, _rootfs, _userns

from sandboxkit import ErrorCode, Sandbox, SandboxError

MakeSandbox = Callable[..., Sandbox]
SANDBOXKIT = str(Path(sys.executable).with_name("sandboxkit"))

BUSYBOX = Path("/bin/busybox")
#: The guest lane's subordinate ids for its user (deliberately not 100000, root mode's shift).
SUBUID = int(os.environ.get("SANDBOXKIT_TEST_SUBUID", "200000"))

rootless = pytest.mark.skipif(
    os.geteuid() == 0 or not _cgroups.is_v2(),
    reason="rootless mode runs as a non-root user on cgroup v2: in the guest lane of test_bwrap_cgroup2.py",
)


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A busybox root filesystem this user made (image= a directory: copied and shifted in its namespace)."""
    root = tmp_path_factory.mktemp("image") / "rootfs"
    for d in ("bin", "etc", "proc", "dev", "root", "tmp", "home/user"):
        (root / d).mkdir(parents=True)
    (root / "tmp").chmod(0o1777)
    shutil.copy(BUSYBOX, root / "bin" / "busybox")
    applets = subprocess.run([str(BUSYBOX), "--list"], capture_output=True, text=True, check=True).stdout.split()
    for applet in applets:
        if applet != "busybox":
            (root / "bin" / applet).symlink_to("busybox")
    (root / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1000::/home/user:/bin/sh\n")
    (root / "etc" / "group").write_text("root:x:0:\nuser:x:1000:\n")
    return str(root)


def _host_ids(sb: Sandbox) -> dict[int, tuple[int, int]]:
    """pid -> (real uid, real gid) on the host of every process in the sandbox's cgroups."""
    ids = {}
    for procs in _cgroups.sandbox_cgroups(sb.id).commands_dir.rglob("cgroup.procs"):
        for pid in procs.read_text().split():
            status = Path(f"/proc/{pid}/status").read_text()
            uid = next(line.split()[1] for line in status.splitlines() if line.startswith("Uid:"))
            gid = next(line.split()[1] for line in status.splitlines() if line.startswith("Gid:"))
            ids[int(pid)] = (int(uid), int(gid))
    return ids


def _wait_for(check: Callable[[], bool], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.05)
    return check()


@rootless
def test_root_inside_is_the_first_subordinate_id_never_the_user(make: MakeSandbox, image: str) -> None:
    sb = make(image=image, block_network=True)
    assert sb.execute("id -u; id -g").stdout.split() == ["0", "0"]
    assert sb.execute("cat /proc/self/uid_map").stdout.split() == ["0", "1", "65536"], "ids 0.. are 1.. outside"
    sb.execute("sleep 300 >/dev/null 2>&1 &")
    ids = _host_ids(sb)
    assert ids and set(ids.values()) == {(SUBUID, SUBUID)}, f"root inside is uid {SUBUID} on the host: {ids}"
    sb.execute("echo x > /tmp/made-inside")
    upper = _registry.sandboxes_dir() / sb.id / "upper" / "tmp" / "made-inside"
    assert (upper.stat().st_uid, upper.stat().st_gid) == (SUBUID, SUBUID), "files root inside makes are its"
    other = sb.execute("id -u; id -g", user="1000").stdout.split()
    assert other == ["1000", "1000"]
    sb.execute("sleep 301 >/dev/null 2>&1 &", user="user")
    assert (SUBUID + 1000, SUBUID + 1000) in _host_ids(sb).values(), "uid 1000 inside is subuid start + 1000"
    assert not {os.getuid(), 0} & {uid for uid, _ in _host_ids(sb).values()}, "never the user's uid, never root"


@rootless
def test_files_and_background_processes_stay_across_commands(make: MakeSandbox, image: str) -> None:
    sb = make(image=image, block_network=True)
    sb.execute("echo kept > /tmp/file; sleep 302 >/dev/null 2>&1 &")
    assert sb.execute("cat /tmp/file").stdout == "kept\n"
    assert "sleep 302" in sb.execute("ps -o args").stdout
    sb.write_file("/tmp/written", b"data")
    assert sb.read_file("/tmp/written") == b"data"


@rootless
def test_memory_oom_is_resource_limit_exceeded(make: MakeSandbox, image: str) -> None:
    sb = make(image=image, memory_mib=48, block_network=True)
    with pytest.raises(SandboxError) as err:
        sb.execute("dd if=/dev/zero of=/dev/null bs=256M count=1", timeout=60)
    assert err.value.code == ErrorCode.RESOURCE_LIMIT_EXCEEDED
    assert sb.execute("echo alive").stdout == "alive\n"


@rootless
def test_pids_limit_holds_a_fork_flood(make: MakeSandbox, image: str) -> None:
    sb = make(image=image, block_network=True, provider_options={"pids_limit": 32})
    current = _cgroups.sandbox_cgroups(sb.id).dir("pids") / "pids.current"
    sb.execute("i=0; while [ $i -lt 100 ]; do sleep 3 >/dev/null 2>&1 & i=$((i+1)); done 2>/dev/null; true", timeout=60)
    assert int(current.read_text()) <= 32, "more processes run than pids_limit allows"
    assert _wait_for(lambda: int(current.read_text()) < 8, 30), "the flood ends"
    assert sb.execute("echo again").stdout == "again\n"


@rootless
def test_timeout_kills_the_whole_tree(make: MakeSandbox, image: str) -> None:
    sb = make(image=image, block_network=True)
    with pytest.raises(SandboxError) as err:
        sb.execute("setsid sh -c 'sleep 7701' & sh -c 'sleep 7702 &' ; sleep 7703", timeout=2)
    assert err.value.code == ErrorCode.COMMAND_TIMEOUT
    assert "sleep 77" not in sb.execute("ps -o args").stdout, "every process of the timed-out command is dead"


@rootless
def test_from_id_in_a_second_client_process(make: MakeSandbox, image: str) -> None:
    sb = make(image=image, block_network=True)
    sb.execute("echo shared > /tmp/shared")
    code = (
        "from sandboxkit import Sandbox; import sys\n"
        "sb = Sandbox.from_id(sys.argv[1], provider='bwrap'); print(sb.execute('cat /tmp/shared').stdout, end='')"
    )
    out = subprocess.run([sys.executable, "-c", code, sb.id], capture_output=True, text=True, timeout=120)
    assert out.stdout == "shared\n", out.stderr[-2000:]


@rootless
@pytest.mark.parametrize("how", ["close", "gc"])
def test_close_and_gc_leave_no_cgroup_process_or_mount(make: MakeSandbox, image: str, how: str) -> None:
    sb = make(image=image, block_network=True)
    sb.execute("sleep 303 >/dev/null 2>&1 &")
    cgroup = _cgroups.sandbox_cgroups(sb.id).commands_dir
    ready = json.loads((_registry.sandboxes_dir() / sb.id / "ready.json").read_text())
    pids = [*_host_ids(sb), int(ready["supervisor_pid"])]
    if how == "close":
        sb.close()
    else:
        os.kill(int(ready["supervisor_pid"]), signal.SIGKILL)  # the client may: it runs as the user
        assert _wait_for(lambda: not Path(f"/proc/{ready['supervisor_pid']}").exists(), 30)
        gc = [SANDBOXKIT, "gc", "--provider", "bwrap"]
        stale = subprocess.run(gc, capture_output=True, text=True, timeout=120)
        assert stale.returncode == 0, stale.stderr[-2000:]
    assert _wait_for(lambda: not cgroup.exists(), 30), f"{how} leaves the sandbox's cgroup"
    assert _wait_for(lambda: not any(Path(f"/proc/{p}").exists() for p in pids), 30), f"{how} leaves processes"
    assert _wait_for(lambda: not (_registry.sandboxes_dir() / sb.id).exists(), 30), f"{how} leaves its entry"
    assert _wait_for(lambda: not _holding(sb.id), 30), f"{how} leaves its overlay mounted: {_holding(sb.id)}"


def _holding(sandbox_id: str) -> list[str]:
    """The processes whose mount namespace holds the sandbox's overlay (its upper directory)."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if sandbox_id in Path(f"/proc/{pid}/mountinfo").read_text():
                found.append(f"{pid}: {Path(f'/proc/{pid}/cmdline').read_bytes()[:200]!r}")
        except OSError:
            pass
    return found


@rootless
def test_block_network_is_only_lo_and_the_user_network_starts(make: MakeSandbox, image: str) -> None:
    blocked = make(image=image, block_network=True)
    devices = [line.split(":")[0].strip() for line in blocked.execute("cat /proc/net/dev").stdout.splitlines()[2:]]
    assert devices == ["lo"]
    user = make(image=image)  # slirp4netns in the sandbox's namespaces, started as root of the outer one
    devices = [line.split(":")[0].strip() for line in user.execute("cat /proc/net/dev").stdout.splitlines()[2:]]
    assert sorted(devices) == ["lo", "tap0"]
    assert "10.0.2.100" in user.execute("ip -4 addr show tap0").stdout


@rootless
def test_the_client_leaves_its_delegated_cgroup_for_a_leaf_or_is_refused(tmp_path: Path) -> None:
    """v2 enables controllers only for a cgroup with no processes: a client alone in its delegated
    cgroup moves itself into a leaf below it; one that shares it with other processes is refused."""
    own = _cgroups._own_cgroup()
    assert own.name == _cgroups.CLIENT_LEAF, "this test process (alone in the delegated cgroup) moved into a leaf"
    assert {"memory", "cpu", "pids"} <= set((own.parent / "cgroup.subtree_control").read_text().split())
    probe = "from sandboxkit_bwrap import _host, _cgroups; h = _host.probe(); print(h if isinstance(h, str) else 'ok')"
    for crowded in (True, False):
        delegated = own.parent / f"test-{os.getpid()}-{int(crowded)}"  # the user may make and fill its own cgroups
        delegated.mkdir()
        try:
            others = subprocess.Popen(["sleep", "60"]) if crowded else None
            if others is not None:
                (delegated / "cgroup.procs").write_text(str(others.pid))
            start = f'echo $$ > {delegated}/cgroup.procs && exec {sys.executable} -c "{probe}"'
            out = subprocess.run(["sh", "-c", start], capture_output=True, text=True, timeout=60)
            if crowded:
                assert "holds processes" in out.stdout and "systemd-run --user --scope" in out.stdout, out
            else:
                assert out.stdout.strip() == "ok", out
                assert (delegated / _cgroups.CLIENT_LEAF).is_dir(), "the lone client moved into a leaf"
        finally:
            if others is not None:
                others.kill()
                others.wait()
            for leaf in [delegated / _cgroups.CLIENT_LEAF, delegated]:
                _wait_for(functools.partial(_gone, leaf), 10)


def _gone(path: Path) -> bool:
    return not path.exists() or _rmdir(path)


def _rmdir(path: Path) -> bool:
    try:
        path.rmdir()
        return True
    except OSError:
        return False


@rootless
def test_an_image_the_user_cannot_read_is_refused_naming_the_file(make: MakeSandbox, tmp_path: Path) -> None:
    root = tmp_path / "rootfs"
    (root / "bin").mkdir(parents=True)
    shutil.copy(BUSYBOX, root / "bin" / "sh")
    secret = root / "bin" / "unreadable"
    secret.write_text("x")
    secret.chmod(0)
    with pytest.raises(SandboxError) as err:
        make(image=str(root), block_network=True)
    assert err.value.code == ErrorCode.SANDBOX_CREATION_FAILED
    assert str(secret.name) in str(err.value) and "sandboxkit images bootstrap --kind busybox" in str(err.value)


@rootless
def test_capabilities_leave_out_gpu_and_volumes(make: MakeSandbox, image: str) -> None:
    """bwrap runs as the user's subordinate id and cannot reach host directories in the user's home:
    no volumes, no GPU (its files), and the facade refuses them before anything is created."""
    with pytest.raises(SandboxError) as err:
        make(image=image, block_network=True, gpu="T4")
    assert err.value.code == ErrorCode.CAPABILITY_NOT_SUPPORTED
    with pytest.raises(SandboxError) as err:
        make(image=image, block_network=True, volumes={"/data": "v"})
    assert err.value.code == ErrorCode.CAPABILITY_NOT_SUPPORTED


@pytest.mark.skipif(os.geteuid() != 0 or _cgroups.is_v2(), reason="the cgroup v1 refusal, run as root on a v1 host")
def test_a_non_root_client_on_cgroup_v1_is_refused_saying_why(tmp_path: Path) -> None:
    """This host is cgroup v1: a non-root client (``nobody``) gets PROVIDER_UNAVAILABLE naming why and what to do."""
    code = (
        "from sandboxkit import Sandbox, SandboxError\n"
        "try:\n    Sandbox.create(provider='bwrap', block_network=True)\n"
        "except SandboxError as e:\n    print(e.code.value, e.message)\n"
    )
    tmp_path.chmod(0o777)
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "PYTHONDONTWRITEBYTECODE": "1"}
    # nobody keeps CAP_DAC_READ_SEARCH alone (ambient), so it can read this checkout and its .venv
    # wherever they are (a clone under a 0700 directory, /root/...); the provider decides by its uid
    reader = ["--inh-caps", "+dac_read_search", "--ambient-caps", "+dac_read_search"]
    argv = ["setpriv", "--reuid", "nobody", "--regid", "nogroup", "--clear-groups", *reader, sys.executable, "-c", code]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=120, env=env, cwd=tmp_path)
    assert out.stdout.startswith(ErrorCode.PROVIDER_UNAVAILABLE.value), out.stdout + out.stderr[-2000:]
    assert "cgroup v1, which has no safe delegation" in out.stdout and "run it as root" in out.stdout
    assert not (tmp_path / ".local").exists(), "a refused create makes no state"


def test_subordinate_ranges_are_read_by_name_or_uid(tmp_path: Path) -> None:
    table = tmp_path / "subuid"
    table.write_text("other:100000:65536\nalice:300000:1000\n1000:400000:65536\n")
    assert _userns._subordinate(table, "alice", 1000) == 400000, "a range too small is skipped; uid matches too"
    assert _userns._subordinate(table, "bob", 1001) is None
    assert _userns._subordinate(tmp_path / "missing", "alice", 1000) is None


def test_a_missing_range_says_how_to_add_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_userns, "_subordinate", lambda *_: None)
    monkeypatch.setattr(shutil, "which", lambda name: f"/usr/bin/{name}")
    reason = str(_userns.probe())
    assert "usermod --add-subuids" in reason and "--add-subgids" in reason
    monkeypatch.setattr(shutil, "which", lambda name: None)
    assert "apt-get install uidmap" in str(_userns.probe())
    assert _host.is_root() == (os.geteuid() == 0)


@pytest.mark.skipif(os.geteuid() != 0, reason="makes files of other owners (root)")
def test_a_cache_entry_records_its_shift_and_refuses_ids_the_user_cannot_map(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The rootless shift runs in the user's namespace (recorded here, not run); an entry holding
    ids outside the user's range (made by root, or for another subordinate range) is refused."""
    ids = _userns.Ids(1000, 1000, SUBUID, SUBUID, "/usr/bin/newuidmap", "/usr/bin/newgidmap")
    ran: list[list[str]] = []
    monkeypatch.setattr(_userns, "run", lambda _ids, _launch, argv: ran.append(list(argv)))
    entry = tmp_path / "entry"
    (entry / "rootfs" / "bin").mkdir(parents=True)
    (entry / "config.json").write_text(json.dumps({"shift": 100000}))
    for path in (entry / "rootfs", entry / "rootfs" / "bin"):
        os.chown(path, 1000, 1000)  # what the user made; and one of its subordinate ids (already shifted)
    os.chown(entry / "rootfs" / "bin", SUBUID + 5, SUBUID + 5)
    _rootfs._shift_rootless(entry, ids, "launch")
    assert ran and ran[0][-1] == str(entry / "rootfs"), "the shift runs in the namespace, over the rootfs"
    assert json.loads((entry / "config.json").read_text())["shift"] == [SUBUID, SUBUID], "and is recorded"
    stranger = entry / "rootfs" / "bin" / "made-by-root"
    stranger.write_text("x")  # owned by host root: outside the user's namespace
    with pytest.raises(SandboxError) as err:
        _rootfs._shift_rootless(entry, ids, "launch")
    assert err.value.code == ErrorCode.SANDBOX_CREATION_FAILED
    assert str(stranger) in str(err.value) and "make it again as this user" in str(err.value)
