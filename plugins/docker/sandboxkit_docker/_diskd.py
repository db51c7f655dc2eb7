"""The warden's disk daemon: mounts disk-capped filesystems for creates, with no process start per create.

Runs in the warden container as ``python3 -I -S -c SOURCE CONFIG_JSON`` (standard library only),
started and stopped by ``_warden_main``. Once, at start, it binds :data:`SOCKET` (in the warden's
own filesystem, where clients reach it through one long-lived ``docker exec`` each, see
``_diskcap``), then enters the engine's mount namespace with ``setns`` (the warden has the host's
PID namespace, SYS_ADMIN, SYS_CHROOT and SYS_PTRACE). Requests are JSON lines, answers too:

- ``{"op": "probe", "root": DATA_ROOT}``: whether caps can be mounted here (a 4 MiB trial, once);
- ``{"op": "cap", "root": ..., "id": CONTAINER_ID, "mib": N}``: a fresh ext4 filesystem of N MiB
  over the container's overlay2 layer directory (found in the engine's layer store, or given as
  ``"layer"``) and one of CONTAINER_DIR_MIB over its directory ``DATA_ROOT/containers/ID``, each
  holding the files that were there.

Filesystems come formatted ahead of time from a pool of sparse ext4 images in
``DATA_ROOT/sandboxkit-diskpool`` (same filesystem as the layers, so taking one is a rename),
refilled in the background: :data:`DEPTH` images of each stocked size (the default cap and the
container directory's), :data:`EXTRA_DEPTH` of the :data:`EXTRA_SIZES` other sizes asked for last
(at most :data:`EXTRA_MAX_MIB` each). Any other size is formatted on demand. A sparse image takes
only its metadata on disk (~5 MiB for 10 GiB). The image is renamed into the directory, attached
to a loop device with autoclear and mounted over the directory, so removing the container (the
engine unmounts and deletes the layer directory) releases the mount, the loop device and the file.
On SIGTERM (the warden's stop) the pool is deleted; a new daemon deletes what a killed one left.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import json
import os
import shutil
import signal
import socket
import stat
import struct
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

SOCKET = "/run/sandboxkit-disk.sock"
POOL = "sandboxkit-diskpool"
#: the name of a cap's image file inside the directory it caps (hidden under the mount)
IMAGE = ".sandboxkit-disk"
DEPTH = 4
EXTRA_DEPTH = 2
EXTRA_SIZES = 2
EXTRA_MAX_MIB = 10240
#: the cap on a container's own directory (hosts, hostname, resolv.conf, log, config), MiB
CONTAINER_DIR_MIB = 16
MKFS = ["mkfs.ext4", "-q", "-F", "-m", "0", "-O", "^has_journal", "-E", "lazy_itable_init=1,nodiscard"]

_CLONE_NEWNS = 0x00020000
_LOOP_CTL_GET_FREE = 0x4C82
_LOOP_SET_FD = 0x4C00
_LOOP_CLR_FD = 0x4C01
_LOOP_SET_STATUS64 = 0x4C04
_LOOP_CONFIGURE = 0x4C0A
_LO_FLAGS_AUTOCLEAR = 4
#: struct loop_info64: 5 u64, 4 u32 (lo_flags last), file name, crypt name, key, 2 u64
_INFO64 = struct.Struct("=5Q4I64s64s32s2Q")
_MNT_DETACH = 2

_libc = ctypes.CDLL(None, use_errno=True)


class CapError(Exception):
    """A cap request that cannot be served; the message goes back to the client."""


def _check(result: int, what: str) -> None:
    if result != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def _mount_ns(pid: int | str) -> tuple[int, int]:
    st = os.stat(f"/proc/{pid}/ns/mnt")
    return st.st_dev, st.st_ino


def _parent(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as f:
        return int(f.read().rsplit(")", 1)[1].split()[1])


def enter_engine_namespace() -> str:
    """Join the mount namespace of the first ancestor outside this container (the runtime's shim)."""
    own, pid = _mount_ns("self"), os.getppid()
    while pid > 1 and _mount_ns(pid) == own:
        pid = _parent(pid)
    if pid <= 1:
        raise CapError("the warden does not see the engine's host processes (no host PID namespace)")
    with open(f"/proc/{pid}/comm") as f:
        via = f"{pid} ({f.read().strip()})"
    fd = os.open(f"/proc/{pid}/ns/mnt", os.O_RDONLY | os.O_CLOEXEC)
    try:
        _check(_libc.setns(fd, _CLONE_NEWNS), f"entering the mount namespace of process {via}")
    finally:
        os.close(fd)
    return via


def attach_loop(path: str) -> tuple[int, str]:
    """A loop device on ``path`` with autoclear (it detaches when its last user, the mount, goes): fd, path."""
    with open(path, "r+b", buffering=0) as backing:
        control = os.open("/dev/loop-control", os.O_RDWR | os.O_CLOEXEC)
        try:
            for _ in range(20):  # another process may take the free device first
                number = fcntl.ioctl(control, _LOOP_CTL_GET_FREE)
                dev = os.open(f"/dev/loop{number}", os.O_RDWR | os.O_CLOEXEC)
                info = _INFO64.pack(0, 0, 0, 0, 0, 0, 0, 0, _LO_FLAGS_AUTOCLEAR, path.encode()[:63], b"", b"", 0, 0)
                try:
                    fcntl.ioctl(dev, _LOOP_CONFIGURE, struct.pack("=II", backing.fileno(), 0) + info + bytes(64))
                    return dev, f"/dev/loop{number}"
                except OSError as exc:
                    if exc.errno == errno.EBUSY:
                        os.close(dev)
                        continue
                    if exc.errno not in (errno.EINVAL, errno.ENOTTY):  # before Linux 5.8: two steps
                        os.close(dev)
                        raise
                try:
                    fcntl.ioctl(dev, _LOOP_SET_FD, backing.fileno())
                except OSError as exc:
                    os.close(dev)
                    if exc.errno == errno.EBUSY:
                        continue
                    raise
                try:
                    fcntl.ioctl(dev, _LOOP_SET_STATUS64, info)
                except OSError:
                    fcntl.ioctl(dev, _LOOP_CLR_FD)
                    os.close(dev)
                    raise
                return dev, f"/dev/loop{number}"
        finally:
            os.close(control)
    raise CapError("no free loop device")


def copy_tree(src: str, dst: str) -> None:
    """``cp -a`` of ``src``'s entries (but the cap's image) into ``dst``: owners, modes, times, xattrs."""
    for name in os.listdir(src):
        if name == IMAGE:
            continue
        s, d = os.path.join(src, name), os.path.join(dst, name)
        st = os.lstat(s)
        if stat.S_ISDIR(st.st_mode):
            os.mkdir(d)
            copy_tree(s, d)
        elif stat.S_ISLNK(st.st_mode):
            os.symlink(os.readlink(s), d)
        elif stat.S_ISREG(st.st_mode):
            shutil.copyfile(s, d)
        else:
            os.mknod(d, st.st_mode, st.st_rdev)
        os.chown(d, st.st_uid, st.st_gid, follow_symlinks=False)
        shutil.copystat(s, d, follow_symlinks=False)


def mount_over(directory: str, image: str) -> None:
    """Mount the ext4 ``image`` (already inside ``directory``) over ``directory``, with its files."""
    below = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)  # reaches the files under the mount
    try:
        dev, device = attach_loop(image)
        try:
            mounted = _libc.mount(device.encode(), directory.encode(), b"ext4", 0, b"noinit_itable")
            _check(mounted, f"mounting the cap over {directory}")
        finally:
            os.close(dev)  # autoclear: the mount now holds the device (or nothing does, and it detaches)
        try:
            copy_tree(f"/proc/self/fd/{below}", directory)
        except BaseException:
            _libc.umount2(directory.encode(), _MNT_DETACH)
            raise
    finally:
        os.close(below)


def mkfs(path: str, mib: int) -> subprocess.Popen[bytes]:
    """Start formatting a sparse ext4 image of ``mib`` at ``path`` (at low priority)."""
    proc = subprocess.Popen([*MKFS, path, f"{mib}M"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        os.setpriority(os.PRIO_PROCESS, proc.pid, 10)
    except OSError:
        pass
    return proc


def format_now(path: str, mib: int) -> None:
    proc = mkfs(path, mib)
    _, err = proc.communicate()
    if proc.returncode != 0:
        raise CapError(f"mkfs.ext4 of {mib} MiB failed: {err.decode(errors='replace').strip()[-200:]}")


class Pool:
    """Formatted sparse images by size, refilled by one background thread, deleted at stop."""

    def __init__(self, stocked: list[int]) -> None:
        self.stocked = stocked
        self.extra: list[int] = []  # other sizes asked for, the latest last
        self.dir: str | None = None
        self.ready: dict[int, list[str]] = {}
        self.usable = True  # False when a rename into a layer crossed filesystems
        self.cond = threading.Condition()
        self.stopping = False
        self.formatting: subprocess.Popen[bytes] | None = None
        self.count = 0

    def start(self, root: str) -> None:
        """Use ``root``'s pool directory (deleting what an earlier daemon left there) and fill it."""
        with self.cond:
            if self.dir is not None:
                return
            self.dir = os.path.join(root, POOL)
            shutil.rmtree(self.dir, ignore_errors=True)
            os.makedirs(self.dir, mode=0o700)
        threading.Thread(target=self._refill, name="pool-refill", daemon=True).start()

    def depth(self, mib: int) -> int:
        if not self.usable:
            return 0
        return DEPTH if mib in self.stocked else EXTRA_DEPTH if mib in self.extra else 0

    def take(self, mib: int, target: str) -> bool:
        """Put a formatted image of ``mib`` at ``target``: from the pool (a rename: True), else formatted now."""
        with self.cond:
            if mib not in self.stocked and mib <= EXTRA_MAX_MIB:
                if mib in self.extra:
                    self.extra.remove(mib)
                self.extra.append(mib)
                for dropped in self.extra[:-EXTRA_SIZES]:
                    for dropped_path in self.ready.pop(dropped, []):
                        _unlink(dropped_path)
                del self.extra[:-EXTRA_SIZES]
            found = self.ready.get(mib) or []
            path = found.pop() if found else None  # the refill waits for wake(): no mkfs beside a create's mounts
        if path is not None:
            try:
                os.rename(path, target)
                return True
            except OSError as exc:
                _unlink(path)
                if exc.errno == errno.EXDEV:  # the data-root spans filesystems: format in place from now on
                    self.clear()
        format_now(target, mib)
        return False

    def wake(self) -> None:
        """Have the refill look at the pool (after a request's answer went out)."""
        with self.cond:
            self.cond.notify_all()

    def clear(self) -> None:
        """Delete every pooled image and stop refilling (stop, or a pool that cannot serve)."""
        with self.cond:
            self.usable, self.stopping = False, True
            if self.formatting is not None:
                self.formatting.kill()
            self.ready.clear()
            if self.dir is not None:
                shutil.rmtree(self.dir, ignore_errors=True)
            self.cond.notify_all()

    def _wanted(self) -> int | None:
        for mib in [*self.stocked, *self.extra]:
            if len(self.ready.get(mib, [])) < self.depth(mib):
                return mib
        return None

    def _refill(self) -> None:
        while True:
            with self.cond:
                mib = self._wanted()
                while not self.stopping and mib is None:
                    self.cond.wait()
                    mib = self._wanted()
                if self.stopping or self.dir is None or mib is None:
                    return
                self.count += 1
                tmp = os.path.join(self.dir, f".formatting-{self.count}")
                try:
                    self.formatting = proc = mkfs(tmp, mib)
                except OSError as exc:  # no mkfs.ext4 on the host: creates format on demand (and say why)
                    print(f"pool: cannot run mkfs.ext4: {exc}", flush=True)
                    self.cond.wait(30)
                    continue
            _, err = proc.communicate()
            with self.cond:
                self.formatting = None
                if self.stopping or proc.returncode != 0:
                    _unlink(tmp)
                    if proc.returncode != 0 and not self.stopping:
                        print(f"pool: mkfs.ext4 failed: {err.decode(errors='replace').strip()[-200:]}", flush=True)
                        self.cond.wait(30)  # not in a busy loop
                    continue
                final = os.path.join(self.dir, f"{mib}M-{self.count}.img")
                os.rename(tmp, final)
                if self.depth(mib) > len(self.ready.get(mib, [])):
                    self.ready.setdefault(mib, []).append(final)
                else:
                    _unlink(final)


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def layer_of(root: str, container_id: str) -> str:
    """The container's overlay2 layer directory, from the engine's layer store (no API round trip)."""
    try:
        with open(os.path.join(root, "image", "overlay2", "layerdb", "mounts", container_id, "mount-id")) as f:
            mount_id = f.read().strip()
    except OSError as exc:
        raise NoLayer(f"the engine's layer store does not name the container's layer ({exc})") from None
    if not mount_id or "/" in mount_id or mount_id.startswith("."):
        raise NoLayer(f"the engine's layer store names the layer {mount_id!r}")
    return os.path.join(root, "overlay2", mount_id)


class NoLayer(CapError):
    """The layer store did not say where the layer is; the client asks again with the layer directory."""


class Daemon:
    def __init__(self, config: dict[str, Any]) -> None:
        self.pool = Pool([CONTAINER_DIR_MIB, int(config["default_mib"])])
        self.broken: str | None = None  # why this warden cannot mount, if it cannot
        self.probed: str | None = None  # the trial's outcome: "" when it passed
        self.probe_lock = threading.Lock()
        self.beside = ThreadPoolExecutor(thread_name_prefix="cap")  # a request's second mount

    def handle(self, req: dict[str, Any]) -> dict[str, Any]:
        if self.broken is not None:
            raise CapError(self.broken)
        root = str(req["root"])
        self.probe(root)
        if req["op"] == "probe":
            return {"ok": True}
        if req["op"] == "cap":
            cid = str(req["id"])
            if len(cid) != 64 or not all(c in "0123456789abcdef" for c in cid):
                raise CapError(f"{cid!r} is not a full container id")
            layer, container = str(req.get("layer") or layer_of(root, cid)), os.path.join(root, "containers", cid)
            if not (os.path.isdir(os.path.join(layer, "diff")) and os.path.isdir(os.path.join(layer, "work"))):
                raise CapError(f"{layer} is not an overlay2 layer")
            started = time.monotonic()
            beside = self.beside.submit(self.cap, container, CONTAINER_DIR_MIB)  # the two mounts at once
            pooled = [self.cap(layer, int(req["mib"])), beside.result()]
            return {"ok": True, "pooled": pooled, "ms": round((time.monotonic() - started) * 1000, 1)}
        raise CapError(f"unknown request {req['op']!r}")

    def probe(self, root: str) -> None:
        """A 4 MiB trial in ``root``, once; then start the pool there."""
        with self.probe_lock:
            if self.probed is None:
                trial = os.path.join(root, f".sandboxkit-probe.{os.getpid()}")
                try:
                    os.mkdir(trial)
                    try:
                        format_now(os.path.join(trial, IMAGE), 4)
                        mount_over(trial, os.path.join(trial, IMAGE))
                        _check(_libc.umount2(trial.encode(), 0), f"unmounting {trial}")
                    finally:
                        shutil.rmtree(trial, ignore_errors=True)
                    self.probed = ""
                except (OSError, CapError) as exc:
                    self.probed = f"the warden cannot mount a capped filesystem in {root}: {exc}"
            if self.probed:
                raise CapError(self.probed)
        self.pool.start(root)

    def cap(self, directory: str, mib: int) -> bool:
        """Cap ``directory`` at ``mib``; True when its filesystem came from the pool."""
        if not os.path.isdir(directory):
            raise CapError(f"no {directory} where the warden sees the engine's files")
        if os.path.ismount(directory):
            return False  # capped by an earlier request whose answer was lost: the client asks again
        image = os.path.join(directory, IMAGE)
        pooled = self.pool.take(mib, image)
        mount_over(directory, image)
        return pooled

    def serve(self, conn: socket.socket) -> None:
        with conn, conn.makefile("rb") as requests:
            for line in requests:
                try:
                    answer = self.handle(json.loads(line))
                except (CapError, OSError, KeyError, ValueError, TypeError) as exc:
                    answer = {"ok": False, "error": str(exc), "no_layer": isinstance(exc, NoLayer)}
                conn.sendall(json.dumps(answer).encode() + b"\n")
                self.pool.wake()


def main() -> None:
    daemon = Daemon(json.loads(sys.argv[1]))
    try:
        os.unlink(SOCKET)
    except OSError:
        pass
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(SOCKET)  # in the warden's filesystem, before leaving it
    os.chmod(SOCKET, 0o600)
    server.listen(64)
    try:
        print(f"disk daemon: mounts caps in the mount namespace of process {enter_engine_namespace()}", flush=True)
    except (OSError, CapError) as exc:
        daemon.broken = f"the warden cannot enter the engine's mount namespace: {exc}"
        print(f"disk daemon: {daemon.broken}", flush=True)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        while True:
            conn, _ = server.accept()
            threading.Thread(target=daemon.serve, args=(conn,), daemon=True).start()
    finally:
        daemon.pool.clear()


if __name__ == "__main__":
    main()
