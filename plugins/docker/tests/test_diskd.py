"""The warden's disk daemon: creates take pre-formatted filesystems from a bounded pool that refills,
several clients at once, a broken channel is opened again, and nothing is left after removal or
after ``sandboxkit warden stop``. Runs where the warden mounts the caps (overlay2 without driver
quotas: this machine and CI); tests/security/test_disk_cap.py carries the cap itself out."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sandboxkit_docker import _diskd, _warden
from sandboxkit_docker._diskcap import CONTAINER_DIR_MIB, DiskCaps
from sandboxkit_docker._limits import disk_quota_problem

from sandboxkit import ErrorCode, Sandbox, SandboxError
from sandboxkit.spi import DEFAULT_DISK_MIB

pytestmark = pytest.mark.usefixtures("docker_engine")
SANDBOXKIT = str(Path(sys.executable).with_name("sandboxkit"))


@pytest.fixture
def pool(docker_engine: Any) -> Path:
    """The pool directory of a fresh warden (the tests need the warden's mounts, not driver quotas)."""
    info = docker_engine.info()
    assert disk_quota_problem(info) is not None, "this engine has driver quotas: the warden mounts no caps here"
    with Sandbox.create(timeout=60):  # starts the warden (or replaces one without the disk daemon) and its pool
        pass
    return Path(info["DockerRootDir"]) / _diskd.POOL


def _until(check: Callable[[], bool], what: str, within: float = 30.0) -> None:
    deadline = time.monotonic() + within
    while not check():
        assert time.monotonic() < deadline, what
        time.sleep(0.1)


def _ready(pool: Path) -> dict[int, set[int]]:
    """Inodes of the pool's formatted images by size (MiB)."""
    found: dict[int, set[int]] = {}
    for path in pool.glob("*M-*.img"):
        try:
            found.setdefault(int(path.name.split("M-")[0]), set()).add(path.stat().st_ino)
        except FileNotFoundError:  # taken meanwhile
            pass
    return found


def _full(pool: Path, *sizes: tuple[int, int]) -> bool:
    ready = _ready(pool)
    return all(len(ready.get(mib, ())) == depth for mib, depth in sizes)


def _backing_inodes() -> dict[str, int]:
    """Backing file -> its inode, for every loop device."""
    out = subprocess.run(
        ["losetup", "--list", "--noheadings", "--raw", "-O", "BACK-FILE,BACK-INO"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return {line.rsplit(" ", 1)[0]: int(line.rsplit(" ", 1)[1]) for line in out.splitlines() if line.strip()}


def _layer_dir(docker_engine: Any, sandbox_id: str) -> str:
    upper: str = docker_engine.api.inspect_container(sandbox_id)["GraphDriver"]["Data"]["UpperDir"]
    return upper.removesuffix("/diff")


def _nothing_left_of(docker_engine: Any, *dirs: str) -> None:
    def clean() -> bool:
        mounts = Path("/proc/self/mounts").read_text()
        loops = _backing_inodes()
        return not any(d in mounts or any(f.startswith(d) for f in loops) or os.path.exists(d) for d in dirs)

    _until(clean, f"mounts, loop devices or files left of {dirs}")


def test_creates_take_the_pools_filesystems_and_it_refills_to_its_bound(docker_engine: Any, pool: Path) -> None:
    stocked = ((DEFAULT_DISK_MIB, _diskd.DEPTH), (CONTAINER_DIR_MIB, _diskd.DEPTH))
    _until(lambda: _full(pool, *stocked), f"the pool never filled: {_ready(pool)}")
    before = _ready(pool)
    with Sandbox.create(timeout=60) as sb:
        layer = _layer_dir(docker_engine, sb.id)
        backing = _backing_inodes()[f"{layer}/{_diskd.IMAGE}"]
        assert backing in before[DEFAULT_DISK_MIB], "the layer's filesystem was not one of the pool's"
        size_mib = int(sb.execute("df -m / | awk 'NR==2 {print $2}'").stdout)
        assert DEFAULT_DISK_MIB * 0.9 <= size_mib <= DEFAULT_DISK_MIB
        _until(lambda: _full(pool, *stocked), f"the pool was not refilled: {_ready(pool)}")
    _nothing_left_of(docker_engine, layer)
    # bounded: refills stop at the depth, and nothing else accumulates there
    time.sleep(1.0)
    assert _full(pool, *stocked), _ready(pool)
    bound = 2 * _diskd.DEPTH + _diskd.EXTRA_SIZES * _diskd.EXTRA_DEPTH + 1  # + one being formatted
    assert len(list(pool.iterdir())) <= bound, sorted(p.name for p in pool.iterdir())
    assert len(_ready(pool)) <= 2 + _diskd.EXTRA_SIZES, _ready(pool)


def test_other_sizes_are_formatted_on_demand_and_only_the_latest_few_are_pooled(docker_engine: Any, pool: Path) -> None:
    sizes = [64, 72, 80]
    for mib in sizes:
        with Sandbox.create(timeout=60, provider_options={"disk_mib": mib}) as sb:
            size_mib = int(sb.execute("df -m / | awk 'NR==2 {print $2}'").stdout)
            assert mib * 0.8 <= size_mib <= mib, (mib, size_mib)
            assert "No space left" in sb.execute("head -c 100M /dev/zero > /big").output
    kept = sizes[-_diskd.EXTRA_SIZES :]
    _until(lambda: _full(pool, *((m, _diskd.EXTRA_DEPTH) for m in kept)), f"not pooled: {_ready(pool)}")
    assert set(_ready(pool)) <= {DEFAULT_DISK_MIB, CONTAINER_DIR_MIB, *kept}, _ready(pool)
    with Sandbox.create(timeout=60, provider_options={"disk_mib": sizes[-1]}) as sb:  # now from the pool
        layer = _layer_dir(docker_engine, sb.id)
        assert int(sb.execute("df -m / | awk 'NR==2 {print $2}'").stdout) <= sizes[-1]
    _nothing_left_of(docker_engine, layer)


_CLIENT = """
import sys, threading
from sandboxkit import Sandbox
out = []
def one():
    with Sandbox.create(timeout=60) as sb:
        out.append(sb.execute("df -m / | awk 'NR==2 {print $2}'").stdout.strip())
threads = [threading.Thread(target=one) for _ in range(3)]
[t.start() for t in threads]
[t.join() for t in threads]
print(" ".join(out))
"""


def test_concurrent_creates_of_several_clients_each_get_their_own_cap(docker_engine: Any, pool: Path) -> None:
    other = subprocess.Popen([sys.executable, "-c", _CLIENT], stdout=subprocess.PIPE, text=True)
    sizes: list[int] = []
    layers: list[str] = []
    errors: list[BaseException] = []

    def one() -> None:
        try:
            with Sandbox.create(timeout=60) as sb:
                layers.append(_layer_dir(docker_engine, sb.id))
                sizes.append(int(sb.execute("df -m / | awk 'NR==2 {print $2}'").stdout))
                sb.execute("head -c 20M /dev/zero > /data", check=True)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=one) for _ in range(_diskd.DEPTH + 2)]  # more than the pool holds
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    theirs, _ = other.communicate(timeout=120)
    assert not errors, errors
    assert other.returncode == 0
    assert len(sizes) == _diskd.DEPTH + 2 and len(theirs.split()) == 3
    assert all(DEFAULT_DISK_MIB * 0.9 <= s <= DEFAULT_DISK_MIB for s in [*sizes, *map(int, theirs.split())])
    _nothing_left_of(docker_engine, *layers)


def _disk_daemons() -> list[int]:
    """Host pids of disk daemons (this test runs on the engine's host, which the warden's PID namespace is)."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if argv[1:4] == [b"-I", b"-S", b"-c"] and len(argv) > 4 and b"class Pool:" in argv[4]:
            found.append(int(proc.name))
    return found


def test_a_broken_channel_is_opened_again_and_a_warden_that_cannot_cap_says_so(
    docker_engine: Any, pool: Path, session_label: str
) -> None:
    with Sandbox.create(timeout=60):  # the provider's channel is open now
        pass
    (pid,) = _disk_daemons()
    os.kill(pid, 9)  # the warden restarts it; the channel's relay sees its end
    with Sandbox.create(timeout=60) as sb:
        assert int(sb.execute("df -m / | awk 'NR==2 {print $2}'").stdout) <= DEFAULT_DISK_MIB
    assert _disk_daemons() and _disk_daemons() != [pid]

    caps = DiskCaps(docker_engine.api)
    assert caps.available(docker_engine.info())
    root = docker_engine.info()["DockerRootDir"]
    unknown = caps._ask({"op": "cap", "root": root, "id": "0" * 64, "mib": 64})  # the engine's layer store has none
    assert not unknown["ok"] and unknown["no_layer"], unknown  # apply() then asks the engine for the layer
    created = docker_engine.api.create_container(
        "sandboxkit/base:bookworm", ["true"], labels=dict([session_label.split("=", 1)])
    )
    try:
        _warden.stop(docker_engine.api)
        with pytest.raises(SandboxError) as err:
            caps.apply(created["Id"], DEFAULT_DISK_MIB, docker_engine.info()["DockerRootDir"])
        assert err.value.code == ErrorCode.SANDBOX_CREATION_FAILED
        assert "could not cap the sandbox's disk" in err.value.message and _warden.ENV_SWITCH in err.value.message
    finally:
        caps.close()
        docker_engine.api.remove_container(created["Id"], force=True)
        _warden.ensure(docker_engine.api)


def test_warden_stop_deletes_the_pool(docker_engine: Any, pool: Path) -> None:
    _until(lambda: _ready(pool).get(DEFAULT_DISK_MIB) is not None, "the pool never filled")
    stopped = subprocess.run([SANDBOXKIT, "warden", "stop"], capture_output=True, text=True, timeout=60)
    assert stopped.returncode == 0, stopped
    assert not pool.exists(), sorted(p.name for p in pool.iterdir())
    assert not [f for f in _backing_inodes() if f.startswith(str(pool))]
    with Sandbox.create(timeout=60) as sb:  # the next create brings it back
        assert sb.execute("echo up").stdout == "up\n"
    _until(lambda: _ready(pool).get(DEFAULT_DISK_MIB) is not None, "the pool never came back")
