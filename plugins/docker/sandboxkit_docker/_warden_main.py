"""The warden's own program: it runs as ``python3 -c`` in the ``sandboxkit-warden`` container.

Standard library only (the offline base image has no docker-py). Once a second it lists the
running sandbox containers over the engine socket and force-removes each one past its deadline:

- lifetime: the engine's creation time plus the ``expires_at - created_at`` of its labels (so the
  client's clock does not matter);
- idle (sandboxes labelled ``sandboxkit.idle_reports=1``): ``idle_timeout`` past the last activity
  clients reported. A client reports by writing
  ``/sandboxkit-activity/<id>`` into this container (the archive API): one number, the seconds
  from the write to the moment the idle clock starts (negative: the sandbox went idle that long
  ago; positive: a command runs and the next report comes before then). The file's ctime is the
  write time on the engine's clock. Without a report the idle clock starts when the sandbox (or
  this warden, whichever is later) started.

Started as ``python3 -c PROGRAM DISKD_SOURCE DISKD_CONFIG``, it also runs the disk daemon
(``_diskd``) as its child, restarts it if it dies, and stops it (which deletes its pool of
formatted filesystems) when the warden is stopped.
"""

from __future__ import annotations

import datetime
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
from typing import Any

SOCKET = "/var/run/docker.sock"
ACTIVITY = "/sandboxkit-activity"
#: seconds between two looks at the sandboxes
POLL = 1.0
#: seconds past a deadline before the warden removes a sandbox (its own timer usually ends it first)
GRACE = 2.0
FILTERS = json.dumps({"label": ["sandboxkit.managed=1", "sandboxkit.provider=docker"]})


class _Unix(http.client.HTTPConnection):
    def __init__(self) -> None:
        super().__init__("localhost", timeout=30)

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(SOCKET)
        self.sock = sock


def call(method: str, path: str, **query: str) -> tuple[int, Any]:
    """One engine API call: ``(status, decoded JSON body or None)``."""
    conn = _Unix()
    try:
        conn.request(method, path + ("?" + urllib.parse.urlencode(query) if query else ""))
        resp = conn.getresponse()
        body = resp.read()
        is_json = "json" in (resp.getheader("Content-Type") or "")
        return resp.status, json.loads(body) if body and is_json else None
    finally:
        conn.close()


def engine_time(text: str) -> float:
    """RFC 3339 with nanoseconds (the engine's timestamps) as epoch seconds."""
    head, _, frac = text.rstrip("Z").partition(".")
    whole = datetime.datetime.fromisoformat(head).replace(tzinfo=datetime.UTC).timestamp()
    return whole + (float("0." + frac[:9]) if frac else 0.0)


def plan(container_id: str, labels: dict[str, str]) -> tuple[float, float | None, float] | None:
    """``(lifetime deadline, idle timeout, started)`` of one sandbox, or None when it has no deadline."""
    status, info = call("GET", f"/containers/{container_id}/json")
    if status != 200 or not info:
        return None
    try:
        lifetime = float(labels["sandboxkit.expires_at"]) - float(labels["sandboxkit.created_at"])
        created = engine_time(info["Created"])
        started = engine_time(info["State"]["StartedAt"])
        reported = labels.get("sandboxkit.idle_reports") == "1"  # else no client tells the warden of commands
        idle = float(labels["sandboxkit.idle_timeout"]) if reported else None
    except (KeyError, ValueError):
        return None
    return created + lifetime, idle, started


def idle_since(container_id: str, floor: float) -> float:
    """When the sandbox's idle clock started, from the last activity report (at least ``floor``)."""
    try:
        path = os.path.join(ACTIVITY, container_id)
        written = os.stat(path).st_ctime
        with open(path) as f:
            offset = float(f.read().strip() or 0)
    except (OSError, ValueError):
        return floor
    return max(floor, written + offset)


def sweep(plans: dict[str, tuple[float, float | None, float] | None], born: float) -> None:
    """Look at every running sandbox once; remove those past a deadline."""
    status, rows = call("GET", "/containers/json", filters=FILTERS)
    if status != 200:
        raise OSError(f"listing containers failed with HTTP {status}")
    seen = set()
    for row in rows:
        cid = row["Id"]
        seen.add(cid)
        if cid not in plans:
            plans[cid] = plan(cid, row.get("Labels") or {})
        found = plans[cid]
        if found is None:
            continue
        deadline, idle, started = found
        reason = "expired"
        if idle is not None and (idle_end := idle_since(cid, max(started, born)) + idle) < deadline:
            deadline, reason = idle_end, "idle"
        if time.time() > deadline + GRACE:
            status, _ = call("DELETE", f"/containers/{cid}", force="1")
            print(f"removed {cid[:12]} ({reason}, {time.time() - deadline:.1f}s past its deadline): HTTP {status}")
    for cid in set(plans) - seen:
        del plans[cid]
        try:
            os.unlink(os.path.join(ACTIVITY, cid))
        except OSError:
            pass


def disk_daemon(previous: subprocess.Popen[bytes] | None) -> subprocess.Popen[bytes] | None:
    """The disk daemon, (re)started when the warden was given its source and it is not running."""
    if len(sys.argv) < 3 or (previous is not None and previous.poll() is None):
        return previous
    if previous is not None:
        print(f"disk daemon exited with {previous.returncode}; restarting it", flush=True)
    return subprocess.Popen([sys.executable, "-I", "-S", "-c", sys.argv[1], sys.argv[2]])


def main() -> None:
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    os.makedirs(ACTIVITY, exist_ok=True)
    born = time.time()
    plans: dict[str, tuple[float, float | None, float] | None] = {}
    print("sandboxkit warden: watching sandbox deadlines", flush=True)
    disk = None
    try:
        while True:
            disk = disk_daemon(disk)
            try:
                sweep(plans, born)
            except (OSError, http.client.HTTPException, ValueError) as exc:
                print(f"engine unreachable, retrying: {exc}", flush=True)
            sys.stdout.flush()
            time.sleep(POLL)
    finally:
        if disk is not None:  # it deletes its pool on SIGTERM
            disk.terminate()
            disk.wait(8)


if __name__ == "__main__":
    main()
