"""Which sandbox containers are stale: past their lifetime, never started, stopped, or orphaned."""

from __future__ import annotations

from collections.abc import Mapping

from sandboxkit_docker import _labels

#: A container still ``created`` after this long (or whose creator died) never started.
START_GRACE = 60.0
#: Slack past ``expires_at`` before a running container counts as expired (PID 1 ends it itself).
EXPIRY_GRACE = 5.0


def stale_reason(labels: Mapping[str, str], state: str, now: float) -> str | None:
    """Why this sandbox container is garbage, or None when it should stay."""
    owner = labels.get(_labels.OWNER)
    owner_gone = owner is not None and _labels.owner_alive(owner) is False
    if state in ("exited", "dead"):
        return "stopped"
    if state == "created":
        created = _float(labels.get(_labels.CREATED_AT))
        if owner_gone or (created is not None and now - created > START_GRACE):
            return "never_started"
        return None
    if state not in ("running", "paused", "restarting"):
        return None
    expires = _float(labels.get(_labels.EXPIRES_AT))
    if expires is not None and now > expires + EXPIRY_GRACE:
        return "expired"
    if owner_gone:
        return "owner_gone"
    return None


def _float(value: str | None) -> float | None:
    try:
        return None if value is None else float(value)
    except ValueError:
        return None
