"""Helpers shared by the fault tests."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any


def host_processes_naming(ids: set[str]) -> list[str]:
    """Command lines of host processes that mention any of these container ids."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if any(cid in cmdline for cid in ids):
            found.append(f"{entry.name}: {cmdline[:160]}")
    return found


def created_since(client: Any, since: float, label: str) -> set[str]:
    wanted = {"type": "container", "event": "create", "label": label}
    events = client.events(since=int(since), until=int(time.time() + 1), decode=True, filters=wanted)
    return {e["id"] for e in events}


def container_pids(client: Any, container_id: str) -> list[str]:
    """``ps`` of a container, through docker top (works whatever the container's state of mind)."""
    try:
        top = client.api.top(container_id, ps_args="-eo pid,args")
    except Exception:
        return []
    return [" ".join(p) for p in top.get("Processes") or []]
