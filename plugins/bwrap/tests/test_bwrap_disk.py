"""The disk cap, carried out as root inside real bwrap sandboxes: each sandbox's writable layer is an
ext4 filesystem of ``disk_mib`` of its own (see ``_disk``); what must hold is in each test."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from sandboxkit_bwrap import _disk, _registry

from sandboxkit import ErrorCode, Sandbox, SandboxError
from sandboxkit.spi import DEFAULT_DISK_MIB

MakeSandbox = Callable[..., Sandbox]
SANDBOXKIT = str(Path(sys.executable).with_name("sandboxkit"))


def _wait_for(check: Callable[[], bool], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.1)
    return check()


def _image(sb: Sandbox) -> Path:
    return _registry.sandboxes_dir() / str(sb.id) / _disk.IMAGE


def _loops_of(image: Path) -> list[str]:
    """The host's loop devices backed by ``image`` (also once it is deleted)."""
    found = []
    for backing in Path("/sys/block").glob("loop*/loop/backing_file"):
        try:
            if backing.read_text().strip().startswith(str(image)):
                found.append(backing.parent.parent.name)
        except OSError:
            pass
    return found


def _host_mounts_of(image: Path) -> list[str]:
    return [line for line in Path("/proc/self/mountinfo").read_text().splitlines() if str(_disk.mountpoint()) in line]


def test_writing_past_disk_mib_is_enospc_and_the_host_grows_by_at_most_the_cap(make: MakeSandbox) -> None:
    sb = make(block_network=True, provider_options={"disk_mib": 64})
    assert sb.execute("echo $SANDBOXKIT_DISK_MIB").stdout == "64\n"
    dd = sb.execute("dd if=/dev/zero of=/big bs=1M count=200")
    assert dd.exit_code != 0 and "No space left on device" in dd.stderr, dd.stderr
    assert int(sb.execute("stat -c %s /big").stdout) <= 64 << 20
    assert _image(sb).stat().st_blocks * 512 <= 64 << 20, "the host's disk took more than the cap"
    falloc = sb.execute("fallocate -l 200M /reserved")
    assert falloc.exit_code != 0 and "No space left on device" in falloc.stderr, falloc.stderr
    with pytest.raises(SandboxError):  # the file API too
        sb.write_file("/via-agent", b"x" * (8 << 20))
    # the cap is the layer's size, not a one-off: freed space is usable again, and only up to the cap
    assert sb.execute("rm -f /big /via-agent && fallocate -l 32M /again && echo ok").stdout == "ok\n"
    assert _image(sb).stat().st_blocks * 512 <= 64 << 20


def test_many_small_files_are_bounded_by_the_inode_limit(make: MakeSandbox) -> None:
    sb = make(block_network=True, provider_options={"disk_mib": 16})
    made = sb.execute(
        'python3 -c "\nimport os\nn = 0\ntry:\n    while n < 100000:\n'
        "        open(f'/tmp/f{n}', 'w').close(); n += 1\nexcept OSError as e:\n    print(n, e.errno)\n\""
    )
    count, err = map(int, made.stdout.split())
    assert err == 28 and count <= (16 << 20) // _disk.BYTES_PER_INODE, made.stdout  # ENOSPC, out of inodes
    assert _image(sb).stat().st_blocks * 512 <= 16 << 20


def test_root_inside_can_neither_reach_nor_lift_its_cap(make: MakeSandbox) -> None:
    """The cap is the size of a filesystem the sandbox cannot see (mounted in the supervisor's mount
    namespace, under the overlay), has no device node for, and whose size no capability of its user
    namespace changes; it has no reserved blocks either, so CAP_SYS_RESOURCE would gain nothing."""
    sb = make(block_network=True, provider_options={"disk_mib": 32})
    assert sb.execute("id -u; cat /proc/self/uid_map").stdout.split() == ["0", "0", "100000", "65536"]
    seen = sb.execute("grep -c ext4 /proc/self/mountinfo; ls /dev | grep -c loop; true").stdout.split()
    assert seen == ["0", "0"], "the layer's filesystem or a loop device shows inside"
    attacks = [
        "mount -o remount,size=1G /",
        "umount -l /",
        "mknod /dev/loop9 b 7 9",
        "mount -t ext4 /dev/vda /mnt",
        "chattr -p 0 / ; chattr +i /",
        "python3 -c \"import fcntl,os; fcntl.ioctl(os.open('/', os.O_RDONLY), 0x40086602, b'\\\\0'*8)\"",
    ]
    for attack in attacks:
        sb.execute(attack)
    dd = sb.execute("dd if=/dev/zero of=/big bs=1M count=100")
    assert "No space left on device" in dd.stderr, "the cap stopped holding"
    assert _image(sb).stat().st_blocks * 512 <= 32 << 20
    assert not _host_mounts_of(_image(sb)), "the layer is mounted in the host's mount namespace"


def test_close_and_gc_free_the_layer_and_its_loop_device(make: MakeSandbox) -> None:
    closed = make(block_network=True, provider_options={"disk_mib": 32})
    killed = make(block_network=True, provider_options={"disk_mib": 32})
    images = [_image(closed), _image(killed)]
    for sb in (closed, killed):
        sb.execute("dd if=/dev/zero of=/data bs=1M count=8", check=True)
    assert all(_loops_of(i) for i in images), "each sandbox's layer is on a loop device"
    closed.close()
    record = _registry.load(killed.id)
    assert record is not None
    ready = _registry.ready_state(record)
    assert ready is not None
    os.kill(int(ready["supervisor_pid"]), signal.SIGKILL)
    gc = subprocess.run([SANDBOXKIT, "gc", "--provider", "bwrap"], capture_output=True, text=True, timeout=60)
    assert gc.returncode == 0, gc.stderr
    assert _wait_for(lambda: not any(i.exists() for i in images), 30), "close or gc left a layer's image"
    assert _wait_for(lambda: not any(_loops_of(i) for i in images), 30), "a loop device outlived its sandbox"


def test_the_default_cap_and_a_host_that_cannot_hold_one(make: MakeSandbox, monkeypatch: pytest.MonkeyPatch) -> None:
    """10 GiB by default (as on Docker); a host without loop devices gets no default cap, and an
    explicit ``disk_mib`` is refused there; a cap below ext4's minimum is invalid."""
    sb = make(block_network=True)
    assert sb.execute("echo $SANDBOXKIT_DISK_MIB").stdout == f"{DEFAULT_DISK_MIB}\n"
    size_mib = int(sb.execute("df -m / | awk 'NR==2 {print $2}'").stdout)
    assert DEFAULT_DISK_MIB * 0.9 <= size_mib <= DEFAULT_DISK_MIB, f"/ is {size_mib} MiB"
    for too_small_or_large in (8, 1 << 40):
        with pytest.raises(SandboxError) as err:
            make(block_network=True, provider_options={"disk_mib": too_small_or_large})
        assert err.value.code == ErrorCode.INVALID_ARGUMENT
    monkeypatch.setattr(_disk, "unavailable_reason", lambda: "there is no /dev/loop-control")
    with pytest.raises(SandboxError) as err:
        make(block_network=True, provider_options={"disk_mib": 64})
    assert err.value.code == ErrorCode.CAPABILITY_NOT_SUPPORTED
    assert "no /dev/loop-control" in err.value.message and "Leave disk_mib unset" in err.value.message
    uncapped = make(block_network=True)
    assert uncapped.execute("echo ${SANDBOXKIT_DISK_MIB-none}").stdout == "none\n"
    assert not _image(uncapped).exists() and (_registry.sandboxes_dir() / uncapped.id / "upper").is_dir()
