"""End every sandbox a conformance session created, and find the ones a provider failed to end.

Runs at session end, also after failures and Ctrl+C: first the sandboxes the suite still holds
are closed, then the provider is asked for every live sandbox with the session label
(``Sandbox.list(labels=...)``) and each is closed through ``Sandbox.from_id``. This works for any
provider that declares LIST and RECONNECT. A sandbox the suite had already closed but the
provider still lists is a leak, and fails the session.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from sandboxkit import Capability, ErrorCode, Sandbox, SandboxError, snapshots
from sandboxkit_conformance._target import ConformanceTarget

#: How long a sandbox may take to disappear from ``list`` after ``close()`` before it counts as leaked.
SETTLE_SECONDS = 10.0


@dataclass
class ReapReport:
    """What the reaper found for one provider."""

    provider: str
    #: sandboxes the suite still held (a test was interrupted or failed mid-way); closed now
    closed_open: list[str] = field(default_factory=list)
    #: live labelled sandboxes the suite did not hold (e.g. created while Ctrl+C arrived); closed now
    swept: list[str] = field(default_factory=list)
    #: sandboxes the suite closed that the provider still lists: the provider leaks
    leaked: list[str] = field(default_factory=list)
    #: what could not be done, in words
    problems: list[str] = field(default_factory=list)

    def merged(self, other: ReapReport) -> ReapReport:
        """Both reports in one (two targets of the same provider)."""
        return ReapReport(
            self.provider,
            self.closed_open + other.closed_open,
            self.swept + other.swept,
            self.leaked + other.leaked,
            self.problems + other.problems,
        )


def reap(target: ConformanceTarget, *, second_pass: bool = False) -> ReapReport:
    """Close what ``target`` still holds, then sweep the provider by the session label."""
    report = ReapReport(target.provider)
    for sandbox_id, sandbox in list(target.open.items()):
        try:
            target.close(sandbox)
            report.closed_open.append(sandbox_id)
        except (SandboxError, OSError, RuntimeError) as exc:
            report.problems.append(f"closing {sandbox_id}: {exc}")
    if not target.declares(Capability.LIST):
        report.problems.append(
            f"provider {target.provider!r} does not declare LIST, so sandboxes created outside the suite's "
            "reach (an interrupted create) cannot be found by label"
        )
        return report
    _sweep(target, report)
    if second_pass:  # a create that was in flight when Ctrl+C arrived finishes on the background loop
        time.sleep(3.0)
        _sweep(target, report)
    _delete_snapshots(target, report)
    return report


def _delete_snapshots(target: ConformanceTarget, report: ReapReport) -> None:
    """Delete the session's snapshots where the provider can list them (elsewhere they expire by ttl)."""
    if not target.declares(Capability.SNAPSHOTS):
        return
    try:
        for snapshot in snapshots(target.provider, labels=target.labels):
            snapshot.delete()
    except SandboxError as exc:
        if exc.code != ErrorCode.CAPABILITY_NOT_SUPPORTED:
            report.problems.append(f"deleting the session's snapshots: {exc}")


def _sweep(target: ConformanceTarget, report: ReapReport) -> None:
    deadline = time.monotonic() + SETTLE_SECONDS
    while True:
        try:
            live = [info.id for info in Sandbox.list(target.provider, labels=target.labels)]
        except SandboxError as exc:
            report.problems.append(f"listing sandboxes by label: {exc}")
            return
        lingering = [i for i in live if i in target.closed_ids]
        if not lingering or time.monotonic() > deadline:
            break
        time.sleep(1.0)
    report.leaked.extend(i for i in lingering if i not in report.leaked)
    for sandbox_id in live:
        if not target.declares(Capability.RECONNECT):
            report.problems.append(f"{sandbox_id} is still alive and the provider does not declare RECONNECT")
            continue
        try:
            Sandbox.from_id(sandbox_id, target.provider).close()
        except SandboxError as exc:
            if exc.code != "SANDBOX_NOT_FOUND":
                report.problems.append(f"closing {sandbox_id}: {exc}")
            continue
        if sandbox_id not in target.closed_ids and sandbox_id not in report.swept:
            report.swept.append(sandbox_id)
