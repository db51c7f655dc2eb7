"""Disk caps where the storage driver has none (overlay2 on ext4): the writable layer on its own filesystem.

Between create and start, the warden's disk daemon (``_diskd``: in the engine's mount namespace,
with SYS_ADMIN) mounts a fresh ext4 filesystem of ``disk_mib`` over the container's overlay2 layer
directory (the upper dir, the work dir, which overlayfs wants on one mount, and the driver's own
files) and one of CONTAINER_DIR_MIB over the container's own directory
(``<data-root>/containers/<id>``, whence the engine bind-mounts ``/etc/hosts``, ``/etc/hostname``
and ``/etc/resolv.conf``, writable by root inside). Each filesystem lives in a sparse file hidden
under its mount: only what the sandbox writes takes host disk, at most the cap, and a writer past
it gets ENOSPC. Removing the container unmounts the layer, which releases the loop device
(autoclear), and deletes the directory with the file.

A create costs one request on a channel that stays open: one ``docker exec`` per provider into
the warden, whose stdin and stdout relay JSON lines to the daemon's socket. The daemon takes the
filesystems from a pool formatted ahead of time, so a create pays a rename, a loop attach, a
mount and the copy of a few files, and no process start. A channel that breaks is opened again
once per request. The first create of each provider asks the daemon whether it can mount there
(a 4 MiB trial, once per daemon).
"""

from __future__ import annotations

import json
import threading
from typing import Any

import docker.errors

from sandboxkit.spi import ErrorCode, SandboxError
from sandboxkit_docker import _warden
from sandboxkit_docker._attached import AttachedLines
from sandboxkit_docker._diskd import CONTAINER_DIR_MIB, SOCKET
from sandboxkit_docker._errors import PROVIDER

__all__ = ["CONTAINER_DIR_MIB", "DiskCaps"]

#: longest wait for one answer (a size that is not pooled is formatted while the create waits)
ANSWER_TIMEOUT = 120.0

#: Runs in the warden as ``python3 -I -S -c RELAY SOCKET``: stdin to the daemon's socket, its
#: answers to stdout (the daemon may still be starting: it retries the connect for 10 s).
RELAY = r"""
import os,select,socket,sys,time
s=socket.socket(socket.AF_UNIX)
for i in range(100):
    try:
        s.connect(sys.argv[1]);break
    except OSError:
        if i==99:raise
        time.sleep(0.1)
while True:
    r=select.select([0,s],[],[])[0]
    if 0 in r:
        d=os.read(0,65536)
        if not d:break
        s.sendall(d)
    if s in r:
        d=s.recv(65536)
        if not d:break
        os.write(1,d)
"""


class ChannelBroken(Exception):
    """The channel to the warden's disk daemon closed or failed."""


class _Channel:
    """One attached ``docker exec`` of RELAY in the warden: requests in, answers out, one at a time."""

    def __init__(self, api: Any) -> None:
        if not _warden.serves_diskd(_warden.inspect(api)):
            raise ChannelBroken(
                "the running warden has no disk daemon this client speaks to (stopped, or of an older version: "
                "a create replaces it)"
            )
        created = api.exec_create(_warden.NAME, ["python3", "-I", "-S", "-c", RELAY, SOCKET], stdin=True, user="root")
        try:
            self._lines = AttachedLines(api.exec_start(created["Id"], socket=True), ANSWER_TIMEOUT)
        except OSError as exc:
            raise ChannelBroken(f"the disk channel to the warden failed ({exc})") from None

    def ask(self, request: dict[str, Any]) -> dict[str, Any]:
        try:
            self._lines.send(json.dumps(request).encode())
            line = self._lines.readline()
        except OSError as exc:  # includes a timeout
            raise ChannelBroken(f"the disk channel to the warden failed ({exc})") from None
        if line is None:
            raise ChannelBroken("the warden closed the disk channel")
        try:
            answer = json.loads(line)
        except ValueError:
            raise ChannelBroken(f"the warden answered {line[-200:]!r}") from None
        if not isinstance(answer, dict):
            raise ChannelBroken(f"the warden answered {line[-200:]!r}")
        return answer

    def close(self) -> None:
        self._lines.close()


class DiskCaps:
    """One provider's channel to the warden's disk daemon (opened on first use, shared by its creates)."""

    def __init__(self, api: Any) -> None:
        self._api = api
        self._lock = threading.Lock()
        self._channel: _Channel | None = None

    def _ask(self, request: dict[str, Any]) -> dict[str, Any]:
        """One request; a broken channel is opened again once."""
        with self._lock:
            for attempt in range(2):
                try:
                    if self._channel is None:
                        self._channel = _Channel(self._api)
                    return self._channel.ask(request)
                except (ChannelBroken, docker.errors.APIError) as exc:
                    self.close_locked()
                    if attempt == 1:
                        raise ChannelBroken(str(exc)) from None
        raise AssertionError("unreachable")

    def available(self, info: dict[str, Any]) -> bool:
        """True when the warden can give this engine's sandboxes a capped layer (a 4 MiB trial there)."""
        if info.get("Driver") != "overlay2" or not _warden.enabled():
            return False
        if not _warden.serves_diskd(_warden.inspect(self._api)):
            return False
        try:
            return bool(self._ask({"op": "probe", "root": str(info["DockerRootDir"])}).get("ok"))
        except ChannelBroken:
            return False

    def apply(self, container_id: str, disk_mib: int, root_dir: str) -> None:
        """Mount a ``disk_mib`` filesystem under the created (not yet started) container's writable layer,
        and one of CONTAINER_DIR_MIB under its directory in the engine's ``root_dir``."""
        request: dict[str, Any] = {"op": "cap", "root": root_dir, "id": container_id, "mib": disk_mib}
        try:
            answer = self._ask(request)
            if answer.get("no_layer"):  # the daemon did not find the layer itself: the engine says where
                request["layer"] = self._layer(container_id)
                answer = self._ask(request)
            problem = None if answer.get("ok") else str(answer.get("error"))
        except ChannelBroken as exc:
            problem = str(exc)
        if problem is not None:
            raise SandboxError(
                ErrorCode.SANDBOX_CREATION_FAILED,
                f"could not cap the sandbox's disk at {disk_mib} MiB ({problem[-300:]}); `sandboxkit warden status` "
                f"shows the warden that mounts it, or set {_warden.ENV_SWITCH}=off for no disk cap on this engine",
                provider=PROVIDER,
            )

    def _layer(self, container_id: str) -> str:
        info = self._api.inspect_container(container_id)
        upper = ((info.get("GraphDriver") or {}).get("Data") or {}).get("UpperDir")
        if not upper or not upper.endswith("/diff"):
            raise SandboxError(
                ErrorCode.SANDBOX_CREATION_FAILED,
                "the engine did not report the sandbox's overlay2 layer, so its disk cap cannot be set",
                provider=PROVIDER,
            )
        return str(upper).removesuffix("/diff")

    def close(self) -> None:
        with self._lock:
            self.close_locked()

    def close_locked(self) -> None:
        if self._channel is not None:
            self._channel.close()
            self._channel = None
