"""``sandboxkit ls``, ``sandboxkit rm ID...`` and ``sandboxkit gc``: live and leftover sandboxes."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from typing import Any


def _pairs(values: list[str] | None, what: str) -> dict[str, str]:
    out = {}
    for item in values or []:
        key, eq, value = item.partition("=")
        if not eq or not key:
            print(f"error: {what} must look like KEY=VALUE, got {item!r}", file=sys.stderr)
            raise SystemExit(2)
        out[key] = value
    return out


def add(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    ls = sub.add_parser("ls", help="list live sandboxes")
    ls.add_argument("--app", help="only this app's sandboxes")
    ls.add_argument("--tag", action="append", metavar="KEY=VALUE", help="only sandboxes with this tag (repeatable)")
    ls.add_argument("--label", action="append", metavar="KEY=VALUE", help="only sandboxes with this label")
    ls.add_argument("--json", action="store_true", help="machine-readable output")
    ls.set_defaults(handler=list_)
    rm = sub.add_parser("rm", help="terminate sandboxes by id")
    rm.add_argument("ids", nargs="+", metavar="ID")
    rm.set_defaults(handler=remove)
    gc = sub.add_parser("gc", help="remove sandboxes past their lifetime or left behind by a client that died")
    gc.add_argument("--dry-run", action="store_true", help="only report what would be removed")
    gc.add_argument("--label", action="append", metavar="KEY=VALUE", help="only sandboxes with this label")
    gc.add_argument("--json", action="store_true", help="machine-readable output")
    gc.set_defaults(handler=collect)
    for cmd in (ls, rm, gc):
        cmd.add_argument("--provider", help="provider name (default: $SANDBOXKIT_PROVIDER, else docker)")


def _age(when: dt.datetime | None) -> str:
    if when is None:
        return "-"
    seconds = int((dt.datetime.now(dt.UTC) - when).total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit} ago"
    return f"{max(seconds, 0)}s ago"


def list_(args: argparse.Namespace) -> int:
    from sandboxkit._sync_sandbox import Sandbox

    rows = Sandbox.list(
        args.provider, app=args.app, tags=_pairs(args.tag, "--tag"), labels=_pairs(args.label, "--label")
    )
    if args.json:
        print(json.dumps([_record(r) for r in rows], indent=2))
        return 0
    print(f"{'ID':<14}{'NAME':<20}{'APP':<16}{'STATE':<10}{'CREATED':<12}TAGS")
    for r in rows:
        tags = ",".join(f"{k}={v}" for k, v in sorted(r.tags.items()))
        print(f"{r.id[:12]:<14}{r.name or '-':<20}{r.app:<16}{r.state.value:<10}{_age(r.created_at):<12}{tags}")
    return 0


def _record(r: Any) -> dict[str, Any]:
    return {
        "id": r.id,
        "name": r.name,
        "app": r.app,
        "tags": dict(r.tags),
        "state": r.state.value,
        "created_at": r.created_at.isoformat() if r.created_at else None,
        "provider": r.provider,
    }


def remove(args: argparse.Namespace) -> int:
    from sandboxkit._errors import SandboxError
    from sandboxkit._sync_sandbox import Sandbox

    failed = 0
    for sandbox_id in args.ids:
        try:
            Sandbox.from_id(sandbox_id, args.provider).close()
            print(sandbox_id)
        except SandboxError as exc:
            failed += 1
            print(f"error: {sandbox_id}: {exc}", file=sys.stderr)
    return 3 if failed else 0


def collect(args: argparse.Namespace) -> int:
    from sandboxkit import gc

    stale = gc(args.provider, dry_run=args.dry_run, labels=_pairs(args.label, "--label"))
    if args.json:
        rows = [
            {"id": s.id, "name": s.name, "app": s.app, "state": s.state.value, "reason": s.reason, "removed": s.removed}
            for s in stale
        ]
        print(json.dumps(rows, indent=2))
    else:
        for s in stale:
            verb = "would remove" if args.dry_run else ("removed" if s.removed else "FAILED to remove")
            print(f"{verb} {s.id[:12]} {s.app}/{s.name or '-'} ({s.reason}, {s.state.value})")
        print(f"{len(stale)} stale sandbox(es){' found' if args.dry_run else ''}", file=sys.stderr)
    return 0 if args.dry_run or all(s.removed for s in stale) else 3
