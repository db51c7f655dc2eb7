"""Files move as tar archives through Docker's archive API: no argv limits, no tools needed in the image."""

from __future__ import annotations

import io
import posixpath
import tarfile
import time
from collections.abc import Iterable, Sequence

MODE_DIR_BIT = 1 << 31  # Go's os.ModeDir, as the archive stat header reports it
MODE_SYMLINK_BIT = 1 << 27  # Go's os.ModeSymlink


def pack(files: Sequence[tuple[str, bytes]], uid: int = 0, gid: int = 0) -> bytes:
    """A tar of absolute ``files``, rooted at ``/``, owned by uid:gid."""
    buf = io.BytesIO()
    now = int(time.time())
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path, data in files:
            info = tarfile.TarInfo(path.lstrip("/"))
            info.size, info.mode, info.mtime, info.uid, info.gid = len(data), 0o644, now, uid, gid
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def unpack_one(chunks: Iterable[bytes]) -> tarfile.TarInfo | bytes:
    """The first member of a streamed tar: its bytes if it is a file, else its TarInfo."""
    data = b"".join(chunks)
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tar:
        member = tar.next()
        if member is None:
            raise FileNotFoundError("empty archive")
        if member.isfile():
            extracted = tar.extractfile(member)
            assert extracted is not None
            return extracted.read()
        return member


def resolve_link(path: str, target: str) -> str:
    """The absolute path a symlink at ``path`` pointing to ``target`` names."""
    return posixpath.normpath(target if target.startswith("/") else posixpath.join(posixpath.dirname(path), target))
