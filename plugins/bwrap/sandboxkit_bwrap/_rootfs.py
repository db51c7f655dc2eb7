"""Root filesystems: a directory given as ``image=``, or a named image kept as a directory.

A named image (``sandboxkit/base:bookworm``) lives in the rootfs cache as ``NAME/rootfs`` plus
``NAME/config.json`` (its environment and working directory). ``sandboxkit images bootstrap``
puts it there; otherwise it is exported once from a local Docker engine when one answers.
Nothing is pulled.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from sandboxkit.spi import ErrorCode, SandboxError

DEFAULT_IMAGE = "sandboxkit/base:bookworm"
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


def resolve(image: str | None) -> Rootfs:
    """The rootfs for ``image``; SANDBOX_CREATION_FAILED saying how to get one when there is none."""
    image = image or DEFAULT_IMAGE
    if image.startswith("/"):
        path = Path(image)
        if not (path / "bin" / "sh").exists() and not (path / "bin").is_symlink():
            raise SandboxError(
                ErrorCode.SANDBOX_CREATION_FAILED,
                f"image {image!r} is not a root filesystem directory with /bin/sh; give a directory "
                "such as one `sandboxkit images bootstrap` keeps, or a local Docker image name",
            )
        return Rootfs(path, {"PATH": DEFAULT_PATH})
    entry = cache_dir(image)
    if not (entry / "config.json").exists():
        with _locked(entry):
            if not (entry / "config.json").exists():
                _export(image, entry)
    config = json.loads((entry / "config.json").read_text())
    env = dict(item.split("=", 1) for item in config.get("env", []) if "=" in item)
    env.setdefault("PATH", DEFAULT_PATH)
    return Rootfs(entry / "rootfs", env, config.get("workdir") or "/")


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
