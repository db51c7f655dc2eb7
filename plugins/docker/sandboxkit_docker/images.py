"""Offline base images, built without any registry: debootstrap from the Debian mirror apt uses,
or a static busybox as the small fallback."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Literal

#: The Docker provider's default image: Debian minbase with bash, coreutils, procps, full python3 and pip.
DEFAULT_IMAGE = "sandboxkit/base:bookworm"
#: A 2 MB image with only busybox (no python).
BUSYBOX_IMAGE = "sandboxkit/busybox:latest"
DEBIAN_PACKAGES = ("python3", "python-is-python3", "procps", "python3-pip")
#: The image label listing DEBIAN_PACKAGES: an image built with another list is rebuilt.
PACKAGES_LABEL = "sandboxkit.image.packages"
_ENV = ["ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "ENV LANG=C.UTF-8"]

Kind = Literal["debian", "busybox"]


class BootstrapError(RuntimeError):
    """The image could not be built; the message says what is missing."""


def apt_mirror(suite: str = "bookworm") -> str | None:
    """The Debian mirror this machine's apt is configured with, if any."""
    deb822 = Path("/etc/apt/sources.list.d/debian.sources")
    if deb822.exists():
        for stanza in deb822.read_text().split("\n\n"):
            lines = [ln for ln in stanza.splitlines() if ":" in ln and not ln.lstrip().startswith("#")]
            fields = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines)}
            if suite in fields.get("suites", "").split() and fields.get("uris"):
                return fields["uris"].split()[0]
    legacy = Path("/etc/apt/sources.list")
    if legacy.exists():
        for line in legacy.read_text().splitlines():
            m = re.match(rf"^deb\s+(?:\[[^\]]*\]\s+)?(\S+)\s+{re.escape(suite)}\s", line)
            if m:
                return m.group(1)
    return None


def bootstrap(
    kind: Kind = "debian",
    *,
    tag: str | None = None,
    mirror: str | None = None,
    suite: str = "bookworm",
    force: bool = False,
    progress: Callable[[str], None] = print,
) -> str:
    """Build the offline image of ``kind`` unless it already exists; return its tag."""
    import docker

    tag = tag or (DEFAULT_IMAGE if kind == "debian" else BUSYBOX_IMAGE)
    keep = rootfs_dir(tag)
    try:
        client = docker.from_env(timeout=2)
        client.api.timeout = 600
    except docker.errors.DockerException:
        client = None  # no engine: keep the rootfs directory only (the bwrap provider's image)
    try:
        packages = ",".join(DEBIAN_PACKAGES) if kind == "debian" else ""
        if not force and client is None and (keep / "config.json").exists():
            progress(f"{tag}: rootfs already kept in {keep} (use --force to rebuild)")
            return tag
        if not force and client is not None:
            try:
                present = client.images.get(tag)
                if (present.labels or {}).get(PACKAGES_LABEL, "") == packages:
                    progress(f"{tag}: already present (use --force to rebuild)")
                    return tag
                progress(f"{tag}: built with other packages; rebuilding with {packages}")
            except docker.errors.ImageNotFound:
                pass
        keep.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix="sandboxkit-rootfs-", dir=keep.parent) as tmp:
            rootfs = Path(tmp) / "rootfs"
            started = time.monotonic()
            if kind == "debian":
                _debootstrap(rootfs, mirror or apt_mirror(suite), suite, progress)
                changes = ['CMD ["/bin/bash"]', *_ENV, f"LABEL {PACKAGES_LABEL}={packages}"]
            else:
                _busybox(rootfs, progress)
                changes = ['CMD ["/bin/sh"]', "ENV PATH=/bin:/sbin:/usr/bin", "ENV LANG=C.UTF-8"]
            progress(f"rootfs ready in {time.monotonic() - started:.1f}s")
            if client is not None:
                progress(f"importing as {tag}")
                archive = Path(tmp) / "rootfs.tar"
                with tarfile.open(archive, "w") as tar:
                    tar.add(rootfs, arcname=".")
                repo, _, version = tag.rpartition(":") if ":" in tag.rsplit("/", 1)[-1] else (tag, "", "latest")
                client.api.import_image_from_file(str(archive), repository=repo, tag=version, changes=changes)
            entry = Path(tmp) / "entry"  # the rootfs and its config, moved into place in one rename
            entry.mkdir()
            rootfs.rename(entry / "rootfs")
            env = [c.split(" ", 1)[1] for c in changes if c.startswith("ENV ")]
            (entry / "config.json").write_text(json.dumps({"env": env, "workdir": None}))
            shutil.rmtree(keep, ignore_errors=True)
            entry.rename(keep)
            progress(f"{tag}: built in {time.monotonic() - started:.1f}s; its rootfs is kept in {keep}")
        return tag
    finally:
        if client is not None:
            client.close()


def rootfs_dir(tag: str) -> Path:
    """Where a bootstrapped image's root filesystem is kept as a directory (the bwrap provider's images).

    ``$SANDBOXKIT_ROOTFS_DIR``, else /var/lib/sandboxkit/rootfs (root) or ~/.local/share/sandboxkit/rootfs,
    then the tag with every character but letters, digits, ``.``, ``_`` and ``-`` replaced by ``_``.
    """
    if os.environ.get("SANDBOXKIT_ROOTFS_DIR"):
        root = Path(os.environ["SANDBOXKIT_ROOTFS_DIR"])
    elif os.geteuid() == 0:
        root = Path("/var/lib/sandboxkit/rootfs")
    else:
        data = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
        root = Path(data) / "sandboxkit" / "rootfs"
    return root / re.sub(r"[^A-Za-z0-9._-]", "_", tag)


def _debootstrap(rootfs: Path, mirror: str | None, suite: str, progress: Callable[[str], None]) -> None:
    if shutil.which("debootstrap") is None:
        raise BootstrapError(
            "debootstrap is not installed: `apt-get install debootstrap` "
            "(or use --kind busybox for a python-less image)"
        )
    if os.geteuid() != 0:
        raise BootstrapError("debootstrap needs root: run `sudo sandboxkit images bootstrap`, or --kind busybox")
    if not mirror:
        raise BootstrapError("no Debian mirror found in /etc/apt; pass --mirror URL")
    progress(f"debootstrap {suite} (minbase + {', '.join(DEBIAN_PACKAGES)}); this takes about a minute")
    cmd = [
        "debootstrap",
        "--variant=minbase",
        f"--include={','.join(DEBIAN_PACKAGES)}",
        suite,
        str(rootfs),
        mirror,
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-15:])
        raise BootstrapError(f"debootstrap failed (exit {proc.returncode}):\n{tail}")
    for junk in ("var/cache/apt/archives", "var/lib/apt/lists"):
        for item in (rootfs / junk).glob("*"):
            if item.is_file():
                item.unlink()


def _busybox(rootfs: Path, progress: Callable[[str], None]) -> None:
    source = shutil.which("busybox")
    if source is None:
        raise BootstrapError("busybox is not installed: `apt-get install busybox-static`")
    out = subprocess.run(["ldd", source], capture_output=True, text=True)
    if "not a dynamic executable" not in out.stdout + out.stderr and "statically linked" not in out.stdout:
        raise BootstrapError(f"{source} is dynamically linked; install the busybox-static package")
    progress(f"assembling a busybox rootfs from {source}")
    (rootfs / "bin").mkdir(parents=True)
    shutil.copy2(source, rootfs / "bin" / "busybox")
    applets = subprocess.run([source, "--list"], capture_output=True, text=True, check=True).stdout.split()
    for applet in applets:
        link = rootfs / "bin" / applet
        if not link.exists():
            link.symlink_to("busybox")
    for d in ("tmp", "etc", "root", "proc", "sys", "dev", "usr/bin", "sbin"):
        (rootfs / d).mkdir(parents=True, exist_ok=True)
    (rootfs / "tmp").chmod(0o1777)
    (rootfs / "etc/passwd").write_text("root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n")
    (rootfs / "etc/group").write_text("root:x:0:\nnogroup:x:65534:\n")
