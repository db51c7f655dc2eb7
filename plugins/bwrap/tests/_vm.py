"""A KVM guest on Debian's own kernel that runs a shell script over the host's root (test helper).

The guest boots ``linux-image-amd64``'s kernel (fetched with ``apt-get download`` and unpacked
into :data:`CACHE`, never installed on the host) with a small initramfs of our own: busybox-static
and the kernel modules for 9p, virtio and overlayfs. Its init mounts the host's ``/`` (shared
read-only over 9p) under a tmpfs overlay, so the guest sees the host's files and writes only to
its own memory; mounts proc, sysfs, devtmpfs and ONLY cgroup2 at ``/sys/fs/cgroup`` (the kernel
boots with ``cgroup_no_v1=all``); switches its root there and runs the script; prints its exit status as
``GUEST-RC=N`` and powers off. The guest has no network device.
"""

from __future__ import annotations

import os
import re
import selectors
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

CACHE = Path(os.environ.get("SANDBOXKIT_VM_CACHE", "/var/cache/sandboxkit/vm"))
BUSYBOX = Path("/bin/busybox")
QEMU = "qemu-system-x86_64"
#: what the init needs, loaded with their dependencies (the rest of Debian's kernel is built in); tun
#: for slirp4netns (/dev/net/tun)
MODULES = ("virtio_pci", "9pnet_virtio", "9p", "overlay", "tun")
CMDLINE = "console=ttyS0 panic=-1 quiet rdinit=/init systemd.unified_cgroup_hierarchy=1 cgroup_no_v1=all"
#: ``tcg`` (default: on this project's machines, Firecracker VMs, /dev/kvm is nested without hardware
#: support and boots this kernel far slower than QEMU's own translator) or ``kvm``
ACCEL = os.environ.get("SANDBOXKIT_VM_ACCEL", "tcg")
RC = re.compile(r"^GUEST-RC=(\d+)\s*$", re.M)

INIT = """#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc && mount -t sysfs sys /sys && mount -t devtmpfs dev /dev
for m in $(cat /modules.order); do insmod "/lib/modules/$m.ko" || echo "insmod $m failed"; done
mkdir -p /lower /rw /newroot
mount -t 9p -o trans=virtio,version=9p2000.L,ro,cache=loose,msize=512000 hostroot /lower || echo "9p mount failed"
mount -t tmpfs -o size=1500m,mode=0755 rw /rw
mkdir -p /rw/upper /rw/work
mount -t overlay overlay -o lowerdir=/lower,upperdir=/rw/upper,workdir=/rw/work /newroot || echo "overlay failed"
r=/newroot
mount -t proc proc $r/proc && mount -t sysfs sys $r/sys && mount -t cgroup2 cgroup2 $r/sys/fs/cgroup
mount -t devtmpfs dev $r/dev && mkdir -p $r/dev/pts $r/dev/shm
mount -t devpts devpts $r/dev/pts && mount -t tmpfs shm $r/dev/shm
ln -s /proc/self/fd $r/dev/fd && ln -s fd/0 $r/dev/stdin && ln -s fd/1 $r/dev/stdout && ln -s fd/2 $r/dev/stderr
keep=$(cat /keep)  # the directory the script works in stays visible (a clone under /tmp, say)
for d in /tmp /run /var/tmp /var/lib/sandboxkit/bwrap; do
  case "$keep/" in "$d"/*) continue ;; esac
  mkdir -p $r$d && mount -t tmpfs tmp $r$d
done
chmod 1777 $r/tmp $r/var/tmp
cp -a /lower/var/lib/sandboxkit/bwrap/bin $r/var/lib/sandboxkit/bwrap/ 2>/dev/null  # the host's built helpers
cp /guest.sh $r/guest.sh
echo GUEST-UP
# switch_root, not chroot: a chrooted process may not make user namespaces (bwrap does)
exec switch_root $r /bin/sh -c '/bin/sh /guest.sh; echo "GUEST-RC=$?"; echo o > /proc/sysrq-trigger; sleep 60'
"""


def unavailable_reason() -> str | None:
    """Why no KVM guest can run here, or None."""
    try:
        if ACCEL == "kvm":
            os.close(os.open("/dev/kvm", os.O_RDWR))
    except OSError as e:
        return f"/dev/kvm is not usable ({e.strerror}) and SANDBOXKIT_VM_ACCEL=kvm; unset it to use QEMU's TCG"
    missing = [f"{tool} (Debian {pkg})" for tool, pkg in ((QEMU, "qemu-system-x86"),) if not shutil.which(tool)]
    missing += [] if BUSYBOX.exists() else [f"{BUSYBOX} (Debian busybox-static)"]
    if missing:
        return f"missing {', '.join(missing)}; run scripts/setup.sh"
    return None


def kernel() -> Path:
    """A directory with Debian's ``vmlinuz`` and the modules the init loads, in load order."""
    meta = subprocess.run(["apt-cache", "depends", "linux-image-amd64"], capture_output=True, text=True, check=True)
    found = re.search(r"Depends: (linux-image-\S+)", meta.stdout)
    if found is None:
        raise RuntimeError(f"apt-cache names no kernel package behind linux-image-amd64: {meta.stdout}")
    package = found.group(1)
    dest = CACHE / package
    order = dest / "modules.order"
    if order.exists() and set(MODULES) <= set(order.read_text().split()):
        return dest
    CACHE.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=CACHE) as tmp:
        os.chmod(tmp, 0o755)  # apt-get download drops privileges to _apt where it can
        subprocess.run(["apt-get", "download", "-q", package], cwd=tmp, capture_output=True, check=True, timeout=600)
        deb = next(Path(tmp).glob("*.deb"))
        tree = Path(tmp) / "x"
        subprocess.run(["dpkg-deb", "-x", str(deb), str(tree)], check=True, timeout=600)
        staging = Path(tmp) / "out"
        staging.mkdir()
        shutil.copy(next(tree.glob("boot/vmlinuz-*")), staging / "vmlinuz")
        modules = _module_order(next(tree.glob("lib/modules/*/kernel")))
        for name, path in modules:
            shutil.copy(path, staging / f"{name}.ko")
        (staging / "modules.order").write_text("\n".join(name for name, _ in modules) + "\n")
        shutil.rmtree(dest, ignore_errors=True)
        os.rename(staging, dest)
    return dest


def _module_order(tree: Path) -> list[tuple[str, Path]]:
    """:data:`MODULES` and their dependencies (``depends=`` of each ``.ko``'s modinfo), dependencies first."""
    paths = {p.name.removesuffix(".ko").replace("-", "_"): p for p in tree.rglob("*.ko")}
    order: list[tuple[str, Path]] = []

    def visit(name: str) -> None:
        if any(n == name for n, _ in order):
            return
        found = re.search(rb"depends=([^\0]*)\0", paths[name].read_bytes())
        for dep in found.group(1).decode().split(",") if found else []:
            if dep:
                visit(dep.replace("-", "_"))
        order.append((name, paths[name]))

    for name in MODULES:
        visit(name)
    return order


def _cpio(entries: list[tuple[str, int, bytes, int]]) -> bytes:
    """A newc cpio archive of ``(name, mode, data, rdev)`` entries (what the kernel unpacks as initramfs)."""
    out = bytearray()
    for ino, (name, mode, data, rdev) in enumerate([*entries, ("TRAILER!!!", 0, b"", 0)], 1):
        raw = name.encode() + b"\0"
        fields = (ino, mode, 0, 0, 1, 0, len(data), 0, 0, rdev >> 8, rdev & 0xFF, len(raw), 0)
        out += b"070701" + b"".join(b"%08X" % f for f in fields) + raw
        out += b"\0" * (-len(out) % 4) + data
        out += b"\0" * (-len(out) % 4)
    return bytes(out)


def initramfs(kernel_dir: Path, script: str, dest: Path, keep: str = "") -> None:
    """Write the guest's initramfs: busybox, the modules, our init and the script it runs.

    ``keep``: a host directory the script needs that the guest's tmpfs mounts (/tmp, /run...) must not hide.
    """
    dirs = ["bin", "dev", "proc", "sys", "lib", "lib/modules"]
    entries = [(d, 0o40755, b"", 0) for d in dirs]
    entries += [("dev/console", 0o20600, b"", (5 << 8) | 1)]
    entries += [("bin/busybox", 0o100755, BUSYBOX.read_bytes(), 0)]
    entries += [("init", 0o100755, INIT.encode(), 0), ("guest.sh", 0o100755, script.encode(), 0)]
    order = (kernel_dir / "modules.order").read_text()
    entries += [("modules.order", 0o100644, order.encode(), 0), ("keep", 0o100644, keep.encode(), 0)]
    entries += [(f"lib/modules/{n}.ko", 0o100644, (kernel_dir / f"{n}.ko").read_bytes(), 0) for n in order.split()]
    dest.write_bytes(_cpio(entries))


@dataclass(frozen=True)
class GuestRun:
    """What a guest printed on its console, its script's exit status (None: it never said) and times."""

    output: str
    rc: int | None
    seconds: float
    boot_seconds: float | None


def run(
    script: str, *, timeout: float, keep: str = "", memory_mib: int = 2048, cpus: int = 2, accel: str = ACCEL
) -> GuestRun:
    """Boot a guest that runs ``script`` (sh, as root, over the host's root) and wait until it powers off.

    ``keep``: the host directory the script works in (see :func:`initramfs`).
    """
    kernel_dir = kernel()
    with tempfile.TemporaryDirectory() as tmp:
        initrd = Path(tmp) / "initrd.cpio"
        initramfs(kernel_dir, script, initrd, keep)
        cpu = ["-cpu", "host,-arch-capabilities"] if accel == "kvm" else ["-cpu", "max"]
        argv = [QEMU, "-nodefaults", "-no-user-config", "-accel", accel, *cpu, "-m", str(memory_mib)]
        argv += ["-smp", str(cpus), "-nic", "none", "-display", "none", "-serial", "stdio", "-no-reboot"]
        argv += ["-kernel", str(kernel_dir / "vmlinuz"), "-initrd", str(initrd), "-append", CMDLINE]
        argv += ["-virtfs", "local,path=/,mount_tag=hostroot,security_model=passthrough,readonly=on,multidevs=remap"]
        started = time.monotonic()
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        assert proc.stdout is not None
        lines: list[str] = []
        boot: float | None = None
        deadline = started + timeout
        try:
            with selectors.DefaultSelector() as sel:
                sel.register(proc.stdout, selectors.EVENT_READ)
                buffer = b""
                while time.monotonic() < deadline:
                    if not sel.select(min(5.0, max(0.0, deadline - time.monotonic()))):
                        continue
                    chunk = os.read(proc.stdout.fileno(), 65536)
                    if not chunk:
                        break
                    buffer += chunk
                    *done, buffer = buffer.split(b"\n")
                    for line in done:
                        text = line.decode(errors="replace").rstrip("\r")
                        lines.append(text)
                        if boot is None and text.strip() == "GUEST-UP":
                            boot = time.monotonic() - started
                lines.append(buffer.decode(errors="replace"))
        finally:
            try:
                proc.wait(timeout=max(1.0, min(15.0, deadline - time.monotonic())))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                lines.append(f"[host] the guest did not power off within {timeout:g} s: killed")
        output = "\n".join(lines)
        found = RC.search(output)
        return GuestRun(output, int(found.group(1)) if found else None, time.monotonic() - started, boot)
