"""The disk cap: each sandbox's writable layer on an ext4 filesystem of its own, ``disk_mib`` in size.

The filesystem lives in a sparse file in the sandbox's directory (``STATE/sandboxes/ID/disk.img``),
copied from a template formatted once per size (``STATE/disk/ext4-MIB.img``: no journal, no
reserved blocks, a few hundred KiB of metadata, the writable layer's ``upper`` and ``work``
directories already in it). ``launch --disk`` attaches it to a free loop device (autoclear) and
mounts it on :func:`mountpoint` in the supervisor's private mount namespace, under the overlay's
upper and work directories: the host never sees the mount, and when the sandbox's last process
exits the namespace goes, the filesystem is unmounted and the loop device detaches itself. A
create pays a copy of the template's data extents, a loop attach and a mount (a few ms), and no
process start. A writer past the cap gets ENOSPC; the host's disk grows by at most the cap
(what the sandbox wrote), and removing the sandbox's directory frees it.

Only where the client is root and the host has loop devices and ext4 (a trial mount, once per
process, decides): elsewhere there is no default cap, and ``disk_mib`` is refused.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import functools
import os
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

from sandboxkit.spi import DEFAULT_DISK_MIB, ErrorCode, SandboxError
from sandboxkit_bwrap import _native, _registry, _rootfs
from sandboxkit_bwrap._host import PROVIDER

#: The sandbox's filesystem image, in its directory.
IMAGE = "disk.img"
#: The smallest cap, MiB (ext4's own metadata needs some room).
MIN_MIB = 16
#: ext4 bytes per inode: the inode limit of a layer is disk_mib * 64.
BYTES_PER_INODE = 16384


def disk_dir() -> Path:
    return _registry.state_root() / "disk"


def mountpoint() -> Path:
    """The empty directory every supervisor mounts its sandbox's filesystem on, in its own mount namespace."""
    return _registry.state_root() / "layer"


def layer_dirs(sandbox_dir: Path, capped: bool) -> tuple[Path, Path]:
    """The overlay's upper and work directories: on the capped filesystem, else in the sandbox's directory."""
    base = mountpoint() if capped else sandbox_dir
    return base / "upper", base / "work"


def plan(asked: int | None) -> int | None:
    """The cap for a sandbox (``asked``, else the default), None where no cap can hold; refuses ``asked`` there."""
    reason = unavailable_reason()
    if reason is None:
        host_mib = (lambda st: st.f_blocks * st.f_frsize >> 20)(os.statvfs(_registry.state_root()))
        if asked is not None and asked > host_mib:
            raise SandboxError(
                ErrorCode.INVALID_ARGUMENT,
                f"disk_mib={asked} is larger than the disk that holds the sandboxes' layers ({host_mib} MiB, "
                f"{_registry.state_root()}), so it would cap nothing; ask for less",
                provider=PROVIDER,
            )
        return asked or DEFAULT_DISK_MIB
    if asked is not None:
        raise SandboxError(
            ErrorCode.CAPABILITY_NOT_SUPPORTED,
            f"this host cannot cap a bwrap sandbox's disk ({reason}); disk_mib needs root, loop devices "
            "(/dev/loop-control) and ext4 with mkfs.ext4 (Debian's e2fsprogs). Leave disk_mib unset",
            provider=PROVIDER,
        )
    return None


@functools.cache
def unavailable_reason() -> str | None:
    """Why no sandbox's disk can be capped here, or None: a trial mount of the smallest layer, once."""
    if os.geteuid() != 0:
        return "the client is not root, and only root mounts the capped layer"
    if not Path("/dev/loop-control").exists():
        return "there is no /dev/loop-control"
    if shutil.which("mkfs.ext4") is None:
        return "mkfs.ext4 is not installed (`apt-get install e2fsprogs`)"
    try:
        _registry.ensure_dirs()
        with tempfile.TemporaryDirectory(dir=_registry.state_root()) as tmp:
            image = Path(tmp) / IMAGE
            copy_template(MIN_MIB, image)
            upper, work = layer_dirs(Path(tmp), True)
            argv = [_native.binary("launch"), "--disk", str(image), str(mountpoint())]
            argv += [tmp, str(upper), str(work), str(_registry.mountpoint()), "/bin/true"]
            trial = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.SubprocessError, SandboxError) as exc:
        return f"the trial layer failed: {exc}"
    if trial.returncode != 0:
        return f"the trial layer failed: {(trial.stdout + trial.stderr).strip()[-300:]}"
    return None


def copy_template(mib: int, dest: Path) -> None:
    """A fresh filesystem of ``mib`` at ``dest``: the template's data extents copied, its holes left sparse."""
    source = template(mib)
    with open(source, "rb") as src:
        fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        try:
            size, pos = os.fstat(src.fileno()).st_size, 0
            while pos < size:
                try:
                    start = os.lseek(src.fileno(), pos, os.SEEK_DATA)
                except OSError as exc:
                    if exc.errno == errno.ENXIO:
                        break  # only a hole is left
                    raise
                end = os.lseek(src.fileno(), start, os.SEEK_HOLE)
                while start < end:
                    done = os.copy_file_range(src.fileno(), fd, end - start, start, start)
                    if done == 0:
                        raise OSError(errno.EIO, f"short copy of {source}")
                    start += done
                pos = end
            os.ftruncate(fd, size)
        finally:
            os.close(fd)


def template(mib: int) -> Path:
    """The formatted filesystem of ``mib`` every sandbox with that cap starts from (made once)."""
    path = disk_dir() / f"ext4-{mib}.img"
    if path.exists():
        return path
    with _locked():
        if path.exists():
            return path
        with tempfile.TemporaryDirectory(dir=disk_dir()) as tmp:
            content = Path(tmp) / "root"
            upper, work = layer_dirs(content, False)
            content.mkdir(0o755)
            upper.mkdir(0o755)  # the sandbox's root directory: root inside owns it, every user enters it
            os.chown(upper, _rootfs.SHIFT, _rootfs.SHIFT)
            work.mkdir(0o700)
            image = Path(tmp) / "image"
            with open(image, "wb") as f:
                f.truncate(mib << 20)
            # no journal (the layer dies with the sandbox), no reserved blocks (overlayfs writes some
            # of the upper layer with the mounter's, host root's, credentials), lazy inode tables
            argv = ["mkfs.ext4", "-q", "-F", "-m", "0", "-i", str(BYTES_PER_INODE), "-O", "^has_journal,^resize_inode"]
            argv += ["-E", "lazy_itable_init=1,root_owner=0:0", "-d", str(content), str(image)]
            made = subprocess.run(argv, capture_output=True, text=True, timeout=120)
            if made.returncode != 0:
                raise SandboxError(
                    ErrorCode.SANDBOX_CREATION_FAILED,
                    f"formatting the {mib} MiB writable layer failed: {made.stderr.strip()[-300:]}",
                    provider=PROVIDER,
                )
            os.rename(image, path)
    return path


def release(sandbox_dir: Path) -> None:
    """Kill what still holds a dead sandbox's layer mounted, so that its loop device detaches.

    A supervisor killed with SIGKILL leaves its ``sleep`` (a child in its mount namespace) until
    that sleep ends, up to the sandbox's deadline; the layer stays mounted there until then.
    """
    devices = set()
    for backing in Path("/sys/block").glob("loop*/loop/backing_file"):
        try:
            path = backing.read_text()
            if path.startswith((f"{sandbox_dir}/", f"{sandbox_dir}.gone/")):
                devices.add((backing.parent.parent / "dev").read_text().strip())
        except OSError:
            pass
    holders: dict[str, bool] = {}  # mount namespace -> whether it holds one of them
    for proc in Path("/proc").iterdir() if devices else []:
        try:
            namespace = os.readlink(proc / "ns" / "mnt") if proc.name.isdigit() else None
            if namespace is not None and namespace not in holders:
                mounts = (line.split() for line in (proc / "mountinfo").read_text().splitlines())
                holders[namespace] = any(m[2] in devices and m[4] == str(mountpoint()) for m in mounts)
            if namespace is not None and holders[namespace]:
                os.kill(int(proc.name), signal.SIGKILL)
        except OSError:
            pass


@contextlib.contextmanager
def _locked() -> Iterator[None]:
    for path in (disk_dir(), mountpoint()):
        path.mkdir(parents=True, exist_ok=True)
        path.chmod(0o711)
    with open(disk_dir() / "lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield
