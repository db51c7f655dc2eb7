"""Filesystem snapshots (capability SNAPSHOTS): what was written before is there, what came after is not."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import pytest

import sandboxkit
from sandboxkit import Capability, ErrorCode, Sandbox, SandboxError, Snapshot
from sandboxkit_conformance._target import ConformanceTarget, SandboxPool, requires
from sandboxkit_conformance.suite._support import expect_error, unique

__all__ = ["TestSnapshots"]


def delete_quietly(snapshot: Snapshot) -> None:
    """Delete a snapshot where the provider can (where it cannot, it expires by its ttl); gone already is fine."""
    try:
        snapshot.delete()
    except SandboxError as exc:
        if exc.code not in (ErrorCode.CAPABILITY_NOT_SUPPORTED, ErrorCode.INVALID_ARGUMENT):
            raise


@contextlib.contextmanager
def snapshot_of(sandbox: Sandbox, sandboxes: SandboxPool) -> Iterator[Snapshot]:
    """``sandbox.snapshot()``, deleted at the end (after the sandboxes of the test are closed)."""
    snapshot = sandbox.snapshot(ttl=3600)
    try:
        yield snapshot
    finally:
        sandboxes.close_all()
        delete_quietly(snapshot)


@requires(Capability.SNAPSHOTS)
class TestSnapshots:
    """``snapshot()`` saves the filesystem; ``Sandbox.create(snapshot=...)`` starts from it."""

    def test_a_new_sandbox_starts_from_the_snapshot(
        self, sandboxes: SandboxPool, conformance: ConformanceTarget
    ) -> None:
        source = sandboxes.create()
        marker = unique("before")
        source.write_file("/tmp/sbkc-snap/before.txt", marker)
        with snapshot_of(source, sandboxes) as snapshot:
            self._check_started_from(snapshot, source, marker, sandboxes, conformance)

    @staticmethod
    def _check_started_from(
        snapshot: Snapshot, source: Sandbox, marker: str, sandboxes: SandboxPool, conformance: ConformanceTarget
    ) -> None:
        assert isinstance(snapshot, Snapshot) and snapshot.id and snapshot.provider == conformance.provider
        source.write_file("/tmp/sbkc-snap/after.txt", "after")
        # the snapshotted sandbox keeps running, unchanged
        assert source.read_file("/tmp/sbkc-snap/before.txt").decode() == marker
        assert source.execute("echo alive").stdout == "alive\n"
        for ref in (snapshot, snapshot.id):
            started = sandboxes.create(snapshot=ref, image=None)
            assert started.read_file("/tmp/sbkc-snap/before.txt").decode() == marker
            # a glob, not ls: coreutils' ls needs statx, which older gVisor refuses (EINVAL) for every path
            listing = started.execute('cd /tmp/sbkc-snap && for f in *; do echo "$f"; done').stdout.split()
            assert listing == ["before.txt"], f"a file written after snapshot() must not be there: {listing}"

    def test_snapshots_lists_and_deletes(self, sandboxes: SandboxPool, conformance: ConformanceTarget) -> None:
        source = sandboxes.create()
        with snapshot_of(source, sandboxes) as snapshot:
            self._check_list_and_delete(snapshot, sandboxes, conformance)

    @staticmethod
    def _check_list_and_delete(snapshot: Snapshot, sandboxes: SandboxPool, conformance: ConformanceTarget) -> None:
        try:
            listed = sandboxkit.snapshots(conformance.provider, labels=conformance.labels)
        except SandboxError as exc:
            assert exc.code == ErrorCode.CAPABILITY_NOT_SUPPORTED, f"snapshots() failed: {exc}"
            with expect_error(ErrorCode.CAPABILITY_NOT_SUPPORTED, "Snapshot.delete() where listing is unsupported"):
                snapshot.delete()
            return
        assert snapshot.id in [s.id for s in listed], f"snapshots() must list {snapshot.id}: {listed}"
        user = sandboxes.create(snapshot=snapshot, image=None)
        # deleting a snapshot a live sandbox uses is refused (or deferred): never breaks that sandbox
        try:
            snapshot.delete()
        except SandboxError as exc:
            assert exc.code == ErrorCode.INVALID_ARGUMENT, f"a refused delete must say INVALID_ARGUMENT: {exc}"
        assert user.execute("echo still").stdout == "still\n"
        conformance.close(user)
        delete_quietly(snapshot)
        listed = sandboxkit.snapshots(conformance.provider, labels=conformance.labels)
        assert snapshot.id not in [s.id for s in listed], "a deleted snapshot must not be listed"
        with pytest.raises(SandboxError):
            Sandbox.create(conformance.provider, **conformance.options(snapshot=snapshot.id, image=None))
