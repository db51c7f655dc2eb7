"""Filesystem snapshots as local images: ``docker commit`` of a sandbox, labelled so ``gc`` can reap them.

A committed image keeps the container's labels, and a container inherits its image's labels, so a
snapshot blanks every label sandboxkit put on the sandbox (``""``, which :func:`_labels.present` treats as absent): a
sandbox started from a snapshot is described only by its own labels. The snapshot's bookkeeping
lives under ``sandboxkit.snapshot.*``.
"""

from __future__ import annotations

import datetime as dt
import re
import time
import uuid
from collections.abc import Mapping
from typing import Any

from sandboxkit.spi import ErrorCode, SandboxError, SnapshotInfo
from sandboxkit_docker import _labels

#: Repository of every snapshot image; the tag is the snapshot id.
REPOSITORY = "sandboxkit-snapshot"
PREFIX = f"{_labels.PREFIX}.snapshot"
MANAGED = f"{PREFIX}.managed"
CREATED_AT = f"{PREFIX}.created_at"
EXPIRES_AT = f"{PREFIX}.expires_at"
#: the sandbox it was taken from
SOURCE = f"{PREFIX}.source"
#: bookkeeping labels (session, owner), as ``sandboxkit.label.*`` on sandboxes
USER = f"{PREFIX}.label."
_ID = re.compile(r"^snap-[0-9a-f]{16}$")


def new_id() -> str:
    """A fresh snapshot id (also the image tag)."""
    return f"snap-{uuid.uuid4().hex[:16]}"


def image_ref(snapshot_id: str) -> str:
    """The image a snapshot id names; INVALID_ARGUMENT for anything that is not a snapshot id."""
    if not isinstance(snapshot_id, str) or not _ID.match(snapshot_id):
        raise SandboxError(
            ErrorCode.INVALID_ARGUMENT,
            f"{snapshot_id!r} is not a Docker snapshot id (snap- and 16 hex digits); "
            "`sandboxkit snapshot ls` lists them",
            provider="docker",
        )
    return f"{REPOSITORY}:{snapshot_id}"


def commit_labels(
    container_labels: Mapping[str, str], source: str, labels: Mapping[str, str], ttl: float | None, now: float
) -> dict[str, str]:
    """The snapshot image's labels: every sandbox label blanked, then the snapshot's own."""
    out = {k: "" for k in container_labels if _labels.is_sandbox_label(k)}
    out.update(
        {
            MANAGED: "1",
            CREATED_AT: f"{now:.3f}",
            SOURCE: source,
            **({EXPIRES_AT: f"{now + ttl:.3f}"} if ttl is not None else {}),
            **{f"{USER}{k}": v for k, v in labels.items()},
        }
    )
    return out


def commit(api: Any, container_id: str, snapshot_id: str, labels: Mapping[str, str]) -> None:
    """``docker commit`` of a running sandbox (paused meanwhile) as the snapshot's image."""
    api.commit(container_id, repository=REPOSITORY, tag=snapshot_id, conf={"Labels": dict(labels)}, pause=True)


def commit_with_tmp(api: Any, container_id: str, snapshot_id: str, labels: Mapping[str, str]) -> None:
    """:func:`commit` for a sandbox whose /tmp is an anonymous volume (gVisor), which a commit leaves out.

    With the sandbox paused: commit it, then copy its /tmp into a container of that image (never
    started) and commit that as the snapshot. A sandbox started from it gets a new /tmp volume,
    which the engine fills from the image.
    """
    # the scratch container carries the bookkeeping labels as a sandbox would, so what reaps a
    # session's sandboxes reaps it too if this process dies here; its image does not keep them
    scratch_labels = {_labels.USER + k[len(USER) :]: v for k, v in labels.items() if k.startswith(USER)}
    api.pause(container_id)
    try:
        base = api.commit(container_id, conf={"Labels": dict(labels)}, pause=False)
        scratch = api.create_container(base["Id"], labels=scratch_labels)
        try:
            archive, _ = api.get_archive(container_id, "/tmp")
            api.put_archive(scratch["Id"], "/", archive)
        except BaseException:
            api.remove_container(scratch["Id"], force=True, v=True)
            raise
    finally:
        api.unpause(container_id)
    try:
        image_labels = {**{k: "" for k in scratch_labels}, **labels}
        api.commit(scratch["Id"], repository=REPOSITORY, tag=snapshot_id, conf={"Labels": image_labels}, pause=False)
    finally:
        api.remove_container(scratch["Id"], force=True, v=True)


def info(snapshot_id: str, labels: Mapping[str, str]) -> SnapshotInfo:
    """A snapshot image as SnapshotInfo."""
    created, expires = _float(labels.get(CREATED_AT)), _float(labels.get(EXPIRES_AT))
    return SnapshotInfo(
        id=snapshot_id,
        provider="docker",
        created_at=None if created is None else dt.datetime.fromtimestamp(created, dt.UTC),
        expires_at=None if expires is None else dt.datetime.fromtimestamp(expires, dt.UTC),
        labels={k[len(USER) :]: v for k, v in labels.items() if k.startswith(USER)},
    )


def rows_to_infos(rows: list[dict[str, Any]]) -> list[SnapshotInfo]:
    """``docker images`` rows (already filtered by label) as SnapshotInfo, newest first."""
    found = []
    for row in rows:
        for tag in row.get("RepoTags") or []:
            repo, _, snapshot_id = tag.rpartition(":")
            if repo == REPOSITORY and _ID.match(snapshot_id):
                found.append(info(snapshot_id, row.get("Labels") or {}))
    return sorted(found, key=lambda s: s.created_at or dt.datetime.min.replace(tzinfo=dt.UTC), reverse=True)


def expired(snapshot: SnapshotInfo, now: float | None = None) -> bool:
    """True once the snapshot's ttl has passed."""
    return snapshot.expires_at is not None and snapshot.expires_at.timestamp() < (now or time.time())


def _float(value: str | None) -> float | None:
    try:
        return None if not value else float(value)
    except ValueError:
        return None
