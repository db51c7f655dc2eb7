"""Outcomes of the suite's tests, grouped into a capability matrix per provider (terminal and JSON)."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

import sandboxkit
from sandboxkit import Capability
from sandboxkit_conformance._reaper import ReapReport
from sandboxkit_conformance._target import SUITE_VERSION, ConformanceTarget

#: The matrix row of tests that need no capability: the contract every provider keeps.
CORE = "core"
#: user_properties names the plugin attaches to each suite test report.
PROVIDER_PROPERTY = "sandboxkit_provider"
REQUIRES_PROPERTY = "sandboxkit_requires"
#: A test whose call never reported (Ctrl+C, a crash): it proved nothing, so it is not "passed".
INTERRUPTED = "interrupted"
OUTCOMES = ("passed", "failed", "error", "skipped", "xfailed", "xpassed", INTERRUPTED)


@dataclass
class TestOutcome:
    """One suite test's result, its phases combined."""

    nodeid: str
    provider: str
    requires: list[str]
    #: stays INTERRUPTED until the call phase reports (or an earlier phase fails or skips)
    outcome: str = INTERRUPTED
    reason: str = "interrupted before the test finished"
    duration: float = 0.0

    def add(self, report: pytest.TestReport) -> None:
        """Fold one phase (setup, call, teardown) into the outcome: the first bad phase wins."""
        self.duration += report.duration
        if self.outcome not in (INTERRUPTED, "passed"):
            return
        xfail_reason = getattr(report, "wasxfail", None)
        if report.skipped:
            if xfail_reason is not None:
                self.outcome, self.reason = "xfailed", str(xfail_reason)
            else:
                self.outcome, self.reason = "skipped", _skip_reason(report)
        elif report.failed:
            self.outcome = "failed" if report.when == "call" else "error"
            self.reason = _first_line(report)
        elif report.when == "call":
            self.outcome, self.reason = ("xpassed", str(xfail_reason)) if xfail_reason is not None else ("passed", "")


def _skip_reason(report: pytest.TestReport) -> str:
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        return str(longrepr[2]).removeprefix("Skipped: ")
    return str(longrepr)


def _first_line(report: pytest.TestReport) -> str:
    crash = getattr(report.longrepr, "reprcrash", None)
    text = getattr(crash, "message", None) or str(report.longrepr)
    return text.strip().splitlines()[0][:300] if text.strip() else ""


@dataclass
class Results:
    """Everything the report needs, gathered during the session."""

    tests: dict[str, TestOutcome] = field(default_factory=dict)
    targets: dict[str, ConformanceTarget] = field(default_factory=dict)
    reaps: dict[str, ReapReport] = field(default_factory=dict)

    def record(self, report: pytest.TestReport) -> None:
        """Fold one phase report of a suite test into its outcome."""
        props = dict(report.user_properties)
        provider = props.get(PROVIDER_PROPERTY)
        if provider is None:
            return
        outcome = self.tests.get(report.nodeid)
        if outcome is None:
            requires = [r for r in str(props.get(REQUIRES_PROPERTY, "")).split(",") if r]
            outcome = self.tests[report.nodeid] = TestOutcome(report.nodeid, str(provider), requires)
        outcome.add(report)

    # ------------------------------------------------------------ matrix
    def matrix(self, provider: str) -> dict[str, dict[str, Any]]:
        """capability -> declared, status and counts of each outcome, for one provider."""
        target = self.targets.get(provider)
        declared = target.capabilities if target else frozenset()
        rows: dict[str, Counter[str]] = {CORE: Counter(), **{c.value: Counter() for c in Capability}}
        for test in self.tests.values():
            if test.provider != provider:
                continue
            for group in test.requires or [CORE]:
                rows.setdefault(group, Counter())[test.outcome] += 1
        matrix = {}
        for group, counts in rows.items():
            entry: dict[str, Any] = {"status": _status(counts)}
            if group != CORE:
                entry["declared"] = group in {c.value for c in declared}
                if not entry["declared"] and entry["status"] != "failed":
                    entry["status"] = "skipped"  # its tests skip; the refusal check passing is the expected part
            entry.update({o: counts.get(o, 0) for o in OUTCOMES})
            matrix[group] = entry
        return matrix

    def providers(self) -> list[str]:
        """Every provider the session tested, in order of first use."""
        names = list(self.targets)
        names += [t.provider for t in self.tests.values() if t.provider not in names]
        return list(dict.fromkeys(names))

    def as_json(self, session: str) -> dict[str, Any]:
        """The whole report as plain data."""
        out: dict[str, Any] = {
            "suite": "sandboxkit-conformance",
            "suite_version": SUITE_VERSION,
            "sandboxkit_version": sandboxkit.__version__,
            "session": session,
            "providers": {},
        }
        for name in self.providers():
            target = self.targets.get(name)
            reap = self.reaps.get(name)
            tests = [t for t in self.tests.values() if t.provider == name]
            out["providers"][name] = {
                "provider_version": target.provider_version if target else "unknown",
                "capabilities": sorted(c.value for c in target.capabilities) if target else [],
                "summary": dict(Counter(t.outcome for t in tests)),
                "matrix": self.matrix(name),
                "leaked_sandboxes": list(reap.leaked) if reap else [],
                "reaped_sandboxes": (reap.closed_open + reap.swept) if reap else [],
                "tests": [
                    {
                        "nodeid": t.nodeid,
                        "requires": t.requires,
                        "outcome": t.outcome,
                        "reason": t.reason,
                        "duration": round(t.duration, 3),
                    }
                    for t in tests
                ],
            }
        return out

    def write(self, path: str, session: str) -> None:
        """Write the JSON report to ``path`` (parents are created)."""
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(self.as_json(session), indent=2) + "\n")

    def summary_lines(self) -> list[str]:
        """The terminal summary: one block per provider."""
        lines = []
        for name in self.providers():
            target = self.targets.get(name)
            tests = [t for t in self.tests.values() if t.provider == name]
            counts = Counter(t.outcome for t in tests)
            head = target.describe() if target else f"provider {name!r}"
            lines.append(f"{head} (suite {SUITE_VERSION})")
            lines.append("  " + ", ".join(f"{n} {o}" for o, n in sorted(counts.items())))
            for group, entry in self.matrix(name).items():
                total = sum(entry[o] for o in OUTCOMES)
                if not total:
                    continue
                flag = "" if group == CORE else ("" if entry["declared"] else " (not declared)")
                detail = ", ".join(f"{entry[o]} {o}" for o in OUTCOMES if entry[o])
                lines.append(f"  {group + flag:<32} {entry['status']:<8} {detail}")
            reap = self.reaps.get(name)
            if reap and reap.leaked:
                lines.append(
                    f"  LEAK: {len(reap.leaked)} sandbox(es) closed by the suite are still listed by the provider: "
                    + ", ".join(reap.leaked)
                )
            if reap and (reap.closed_open or reap.swept):
                lines.append(f"  reaped at session end: {len(reap.closed_open) + len(reap.swept)} sandbox(es)")
            lines.extend(f"  reaper: {p}" for p in (reap.problems if reap else []))
        return lines


def _status(counts: Counter[str]) -> str:
    if counts["failed"] or counts["error"] or counts["xpassed"]:
        return "failed"
    if counts[INTERRUPTED]:
        return INTERRUPTED
    if counts["passed"]:
        return "passed"
    if counts["xfailed"]:
        return "xfailed"
    return "skipped"
