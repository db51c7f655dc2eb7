"""``sandboxkit providers``."""

from __future__ import annotations

import argparse
import json

from sandboxkit._registry import providers


def add(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("providers", help="list registered providers (broken ones with their reason)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    rows = providers()
    if args.json:
        print(
            json.dumps([{"name": r.name, "ok": r.ok, "summary": r.summary, "error": r.error} for r in rows], indent=2)
        )
        return 0
    for r in rows:
        print(f"{r.name:<12} {'ok' if r.ok else 'BROKEN':<7} {r.summary if r.ok else r.error}")
    return 0
