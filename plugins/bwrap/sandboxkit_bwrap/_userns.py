"""Rootless mode: the user namespace a non-root client maps for each sandbox (like rootless Podman).

A non-root client cannot make cgroups, mount, or own files as other users on the host. Each of its
sandboxes therefore runs in an outer user namespace of its own, mapped by the setuid helpers
``newuidmap``/``newgidmap`` (Debian's ``uidmap``): id 0 there is the user, ids 1..65536 are its
subordinate ids from ``/etc/subuid`` and ``/etc/subgid``. The supervisor, the agent and
slirp4netns are root there; the sandbox's own user namespace (bwrap's, nested) maps its ids
0..65535 to 1..65536 there: root inside a sandbox is the user's first subordinate id on the host,
never the user. What the client does as root in root mode (owners of the writable layer, the
rootfs's owner shift, volumes) it does in such a namespace too (:func:`run`, ``launch --run``).
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

#: How many subordinate ids a sandbox maps (its ids 0..65535).
SUBIDS = 65_536
#: Root inside a sandbox, as an id of the outer namespace (its 0 is the user).
INNER_ROOT = 1


@dataclass(frozen=True)
class Ids:
    """The user's ids and subordinate ranges, and the helpers that map them."""

    uid: int
    gid: int
    subuid: int
    subgid: int
    newuidmap: str
    newgidmap: str

    def prefix(self, launch: str) -> list[str]:
        """``launch --userns ...``: the arguments that run the rest in a mapped namespace as its root."""
        ids = (self.uid, self.subuid, self.gid, self.subgid)
        return [launch, "--userns", self.newuidmap, self.newgidmap, *map(str, ids)]


def probe() -> Ids | str:
    """The user's ids and ranges, or what is missing and how to get it."""
    helpers = {name: shutil.which(name) for name in ("newuidmap", "newgidmap")}
    missing = [name for name, path in helpers.items() if path is None]
    if missing:
        return (
            f"a non-root client maps each sandbox's user namespace with {' and '.join(missing)}, which is not "
            "installed: `apt-get install uidmap` (or run as root)"
        )
    uid, gid = os.getuid(), os.getgid()
    try:
        name = pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid {uid} has no entry in /etc/passwd, so newuidmap cannot find its subordinate ids; add one"
    starts = {kind: _subordinate(Path(f"/etc/{kind}"), name, uid) for kind in ("subuid", "subgid")}
    if None in starts.values():
        return (
            f"user {name} has no range of {SUBIDS} subordinate ids in /etc/subuid and /etc/subgid (a sandbox maps "
            f"its ids 0..65535 to them); as root: `usermod --add-subuids 200000-265535 --add-subgids "
            f"200000-265535 {name}` (any free range)"
        )
    assert starts["subuid"] is not None and starts["subgid"] is not None
    return Ids(uid, gid, starts["subuid"], starts["subgid"], str(helpers["newuidmap"]), str(helpers["newgidmap"]))


def _subordinate(path: Path, name: str, uid: int) -> int | None:
    """The start of the first range of at least :data:`SUBIDS` ids ``path`` gives the user."""
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        fields = line.strip().split(":")
        if len(fields) != 3 or fields[0] not in (name, str(uid)) or not fields[1].isdigit():
            continue
        if fields[2].isdigit() and int(fields[2]) >= SUBIDS:
            return int(fields[1])
    return None


def run(ids: Ids, launch: str, argv: Sequence[str]) -> None:
    """Run ``argv`` as root of a namespace mapped like a sandbox's; RuntimeError with its stderr when it fails."""
    done = subprocess.run([*ids.prefix(launch), "--run", *argv], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        detail = (done.stderr.strip() or done.stdout.strip())[-300:]
        raise RuntimeError(f"{' '.join(argv[:2])} in the user namespace failed: {detail}")
