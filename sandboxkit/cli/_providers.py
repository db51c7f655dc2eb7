"""``sandboxkit providers``."""

from __future__ import annotations

import argparse
import json
from typing import Any

from sandboxkit import SandboxError, provider_capabilities, providers


def add(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("providers", help="list registered providers (broken ones with their reason)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    rows = providers()
    if args.json:
        print(json.dumps([{**vars(r), "ok": r.ok, **_capabilities(r.name, r.ok)} for r in rows], indent=2))
        return 0
    for r in rows:
        print(f"{r.name:<12} {'ok' if r.ok else 'BROKEN':<7} {r.summary if r.ok else r.error}")
    return 0


def _capabilities(name: str, ok: bool) -> dict[str, Any]:
    """What the provider can honour on this machine now, or why that is unknown."""
    if not ok:
        return {"capabilities": None}
    try:
        return {"capabilities": sorted(c.value for c in provider_capabilities(name))}
    except SandboxError as exc:
        return {"capabilities": None, "capabilities_error": str(exc)}
