"""Root filesystems: a directory given as ``image=``, or a named image kept as a directory.

A named image (``sandboxkit/base:bookworm``) lives in the rootfs cache as ``NAME/rootfs`` plus
``NAME/config.json`` (its environment and working directory). ``sandboxkit images bootstrap``
puts it there; otherwise it is exported once from a local Docker engine when one answers.
Nothing is pulled. A directory given as ``image=`` is copied into the cache once (again when its
mtime changes). Cached roots get their owners shifted by :data:`SHIFT` once, to match the
sandbox's user namespace, in which root is uid SHIFT on the host. A non-root client's cache
(rootless, see ``_userns``) holds files it made, owned by itself: they are given to root inside,
which is its first subordinate id on the host, in a namespace mapped like a sandbox's. Each entry
records the shift its owners carry (``shift`` in ``config.json``), so another one re-shifts.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import shutil
import stat
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sandboxkit.spi import ErrorCode, SandboxError
from sandboxkit_bwrap import _userns

DEFAULT_IMAGE = "sandboxkit/base:bookworm"
#: Root inside a sandbox is this uid (and gid) on the host, and ids 0..ID_RANGE-1 inside are
#: SHIFT..SHIFT+ID_RANGE-1 outside: no sandbox process is ever uid 0 on the host.
SHIFT = 100_000
ID_RANGE = 65_536
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def cache_root() -> Path:
    """``$SANDBOXKIT_ROOTFS_DIR``, else /var/lib/sandboxkit/rootfs (root) or ~/.local/share/sandboxkit/rootfs."""
    if os.environ.get("SANDBOXKIT_ROOTFS_DIR"):
        return Path(os.environ["SANDBOXKIT_ROOTFS_DIR"])
    if os.geteuid() == 0:
        return Path("/var/lib/sandboxkit/rootfs")
    data = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return Path(data) / "sandboxkit" / "rootfs"


def cache_dir(image: str) -> Path:
    """Where the named image's rootfs and config are kept (the same rule as ``images bootstrap``)."""
    return cache_root() / re.sub(r"[^A-Za-z0-9._-]", "_", image)


@dataclass(frozen=True)
class Rootfs:
    """A root filesystem directory and the defaults its image carries."""

    path: Path
    env: dict[str, str] = field(default_factory=dict)
    workdir: str = "/"


def resolve(image: str | None, userns: _userns.Ids | None = None, launch: str = "") -> Rootfs:
    """The rootfs for ``image``; SANDBOX_CREATION_FAILED saying how to get one when there is none.

    ``userns``/``launch``: a non-root client's ids and the launcher that maps its namespace.
    """
    image = image or DEFAULT_IMAGE
    if image.startswith("/"):
        source = Path(image).resolve()
        if not (source / "bin" / "sh").exists() and not (source / "bin").is_symlink():
            raise SandboxError(
                ErrorCode.SANDBOX_CREATION_FAILED,
                f"image {image!r} is not a root filesystem directory with /bin/sh; give a directory "
                "such as one `sandboxkit images bootstrap` keeps, or a local Docker image name",
            )
        entry = cache_dir(f"dir{source}")
        stamp = str(source.stat().st_mtime_ns)
        if _config(entry).get("source_mtime") != stamp:
            with _locked(entry):
                if _config(entry).get("source_mtime") != stamp:
                    _copy(source, entry, stamp, userns, launch)
    else:
        entry = cache_dir(image)
        if not (entry / "config.json").exists():
            with _locked(entry):
                if not (entry / "config.json").exists():
                    _export(image, entry)
    shift: int | list[int] = SHIFT if userns is None else [userns.subuid, userns.subgid]
    if _config(entry).get("shift") != shift:
        with _locked(entry):
            if _config(entry).get("shift") != shift:
                if userns is None:
                    _shift(entry)
                else:
                    _shift_rootless(entry, userns, launch)
    config = _config(entry)
    env = dict(item.split("=", 1) for item in config.get("env", []) if "=" in item)
    env.setdefault("PATH", DEFAULT_PATH)
    return Rootfs(entry / "rootfs", env, config.get("workdir") or "/")


def _config(entry: Path) -> dict[str, Any]:
    try:
        config: dict[str, Any] = json.loads((entry / "config.json").read_text())
    except (OSError, ValueError):
        return {}
    return config


def _shift(entry: Path) -> None:
    """Give the rootfs's files the owners the sandbox's user namespace maps (uid + SHIFT), once."""
    root = entry / "rootfs"
    _shift_one(str(root))
    for dirpath, dirnames, filenames in os.walk(root):
        for name in (*dirnames, *filenames):
            _shift_one(os.path.join(dirpath, name))
    config = _config(entry)
    config["shift"] = SHIFT
    (entry / "config.json").write_text(json.dumps(config))


#: Run as root of a rootless namespace (its 0 is the user, 1 is root inside a sandbox): what the
#: user owns goes to root inside; set-id bits survive the chown.
_SHIFT_IN_USERNS = """
import os, stat, sys
def one(path):
    st = os.lstat(path)
    if st.st_uid == 0 or st.st_gid == 0:
        os.lchown(path, 1 if st.st_uid == 0 else -1, 1 if st.st_gid == 0 else -1)
        if not stat.S_ISLNK(st.st_mode) and st.st_mode & (stat.S_ISUID | stat.S_ISGID):
            os.chmod(path, stat.S_IMODE(st.st_mode))
one(sys.argv[1])
for top, dirs, files in os.walk(sys.argv[1]):
    for name in dirs + files:
        one(os.path.join(top, name))
"""


def _shift_rootless(entry: Path, userns: _userns.Ids, launch: str) -> None:
    """A non-root client's shift: its own files go to root inside (its first subordinate ids), in its namespace.

    Files owned by ids the namespace does not map (an entry made by root, or for another
    subordinate range) cannot be given away by the user: SANDBOX_CREATION_FAILED saying what to do.
    """
    root = entry / "rootfs"
    uids = range(userns.subuid, userns.subuid + _userns.SUBIDS)
    gids = range(userns.subgid, userns.subgid + _userns.SUBIDS)
    paths = [str(root)]
    for top, dirs, files in os.walk(root):
        paths += [os.path.join(top, name) for name in (*dirs, *files)]
    for path in paths:
        st = os.lstat(path)
        if (st.st_uid not in uids and st.st_uid != userns.uid) or (st.st_gid not in gids and st.st_gid != userns.gid):
            raise SandboxError(
                ErrorCode.SANDBOX_CREATION_FAILED,
                f"the rootfs in {entry} has {path} owned by {st.st_uid}:{st.st_gid}, ids this user (uid "
                f"{userns.uid}, subordinate ids from {userns.subuid}) cannot give to the sandbox's root: it was "
                "made by root or for another subordinate range; remove the entry and make it again as this user "
                "(`sandboxkit images bootstrap --kind busybox`, or image= a directory you can read)",
            )
    try:
        _userns.run(userns, launch, [sys.executable, "-I", "-c", _SHIFT_IN_USERNS, str(root)])
    except RuntimeError as exc:
        raise SandboxError(ErrorCode.SANDBOX_CREATION_FAILED, f"shifting the owners of {root} failed: {exc}") from None
    config = _config(entry)
    config["shift"] = [userns.subuid, userns.subgid]
    (entry / "config.json").write_text(json.dumps(config))


def _shift_one(path: str) -> None:
    st = os.lstat(path)
    uid = st.st_uid + SHIFT if st.st_uid < ID_RANGE else st.st_uid
    gid = st.st_gid + SHIFT if st.st_gid < ID_RANGE else st.st_gid
    os.lchown(path, uid, gid)
    if not stat.S_ISLNK(st.st_mode) and st.st_mode & (stat.S_ISUID | stat.S_ISGID):
        os.chmod(path, stat.S_IMODE(st.st_mode))  # chown cleared them


def _copy(source: Path, entry: Path, stamp: str, userns: _userns.Ids | None = None, launch: str = "") -> None:
    """Copy a rootfs directory into the cache (to shift its owners without touching the original).

    A non-root client copies it as itself: every file it cannot read fails the copy, naming it.
    """
    tmp = entry.with_name(entry.name + ".partial")
    _remove(tmp, userns, launch)
    tmp.mkdir(parents=True)
    copy = subprocess.run(["cp", "-a", "--", str(source), str(tmp / "rootfs")], capture_output=True, text=True)
    if copy.returncode != 0:
        hint = ""
        if userns is not None:
            _remove(tmp, userns, launch)
            hint = (
                f"; a non-root client copies the image as itself (uid {userns.uid}) and needs to read every file: "
                "make the rootfs as this user (e.g. `sandboxkit images bootstrap --kind busybox`), or run as root"
            )
        raise SandboxError(
            ErrorCode.SANDBOX_CREATION_FAILED,
            f"copying the rootfs {source} failed: {copy.stderr.strip()[-300:]}{hint}",
        )
    (tmp / "config.json").write_text(json.dumps({"env": [], "workdir": None, "source_mtime": stamp}))
    _remove(entry, userns, launch)
    tmp.rename(entry)


def _remove(path: Path, userns: _userns.Ids | None, launch: str) -> None:
    """rm -rf; a non-root client's shifted files belong to its subordinate ids: removed in its namespace."""
    if userns is not None and path.exists():
        _userns.run(userns, launch, [shutil.which("rm") or "/bin/rm", "-rf", "--", str(path)])
    shutil.rmtree(path, ignore_errors=True)


@contextlib.contextmanager
def _locked(entry: Path) -> Iterator[None]:
    entry.parent.mkdir(parents=True, exist_ok=True)
    with open(f"{entry}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _missing(image: str, why: str) -> SandboxError:
    return SandboxError(
        ErrorCode.SANDBOX_CREATION_FAILED,
        f"image {image!r} has no root filesystem in {cache_root()} and {why}; run `sandboxkit images "
        "bootstrap` (it keeps the default image's rootfs there), or pass image= a rootfs directory",
    )


def _export(image: str, entry: Path) -> None:
    """Export a local Docker image's filesystem into the cache, once."""
    try:
        import docker
        import docker.errors
    except ImportError:
        raise _missing(image, "the docker package is not installed to export it from") from None
    try:
        client = docker.from_env(timeout=10)
        client.ping()
    except Exception:
        raise _missing(image, "no Docker engine answers to export it from") from None
    try:
        try:
            attrs = client.api.inspect_image(image)
        except docker.errors.ImageNotFound:
            raise _missing(image, "the Docker engine has no such image (nothing is pulled)") from None
        container = client.api.create_container(image, command=["/bin/sh"], labels={"sandboxkit.export": "1"})
        tmp = entry.with_name(entry.name + ".partial")
        shutil.rmtree(tmp, ignore_errors=True)
        (tmp / "rootfs").mkdir(parents=True)
        try:
            tar = subprocess.Popen(
                ["tar", "-x", "--numeric-owner", "-C", str(tmp / "rootfs")],
                stdin=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )
            assert tar.stdin is not None
            for chunk in client.api.export(container["Id"]):
                tar.stdin.write(chunk)
            tar.stdin.close()
            if tar.wait() != 0:
                raise SandboxError(ErrorCode.SANDBOX_CREATION_FAILED, f"exporting image {image!r} failed (tar)")
        finally:
            client.api.remove_container(container["Id"], force=True)
        config = attrs.get("Config") or {}
        (tmp / "config.json").write_text(
            json.dumps({"env": config.get("Env") or [], "workdir": config.get("WorkingDir")})
        )
        shutil.rmtree(entry, ignore_errors=True)
        tmp.rename(entry)
    finally:
        client.close()
