"""``sandboxkit network log ID``: what a sandbox with a network policy tried to reach."""

from __future__ import annotations

import argparse
import json


def add(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("network", help="inspect a sandbox's network policy")
    cmds = p.add_subparsers(dest="network_command", required=True, metavar="ACTION")
    log = cmds.add_parser("log", help="connection attempts the sandbox's egress saw, oldest first")
    log.add_argument("sandbox_id", metavar="ID")
    log.add_argument("--denied", action="store_true", help="only the denied attempts")
    log.add_argument("--json", action="store_true", help="machine-readable output")
    log.add_argument("--provider", help="provider name (default: $SANDBOXKIT_PROVIDER, else docker)")
    log.set_defaults(handler=show_log)


def show_log(args: argparse.Namespace) -> int:
    from sandboxkit import Sandbox

    sandbox = Sandbox.from_id(args.sandbox_id, provider=args.provider)
    events = [e for e in sandbox.network_log() if e.verdict == "denied" or not args.denied]
    if args.json:
        rows = [
            {
                "at": e.at.isoformat(),
                "verdict": e.verdict,
                "host": e.host,
                "address": e.address,
                "port": e.port,
                "reason": e.reason,
            }
            for e in events
        ]
        print(json.dumps(rows, indent=2))
        return 0
    for e in events:
        target = f"{e.host or e.address or '?'}:{e.port}" if e.port else (e.host or e.address or "?")
        print(f"{e.at:%H:%M:%S} {e.verdict:<7} {target:<40} {e.reason}")
    denied = sum(e.verdict == "denied" for e in events)
    print(f"{len(events)} attempt(s), {denied} denied")
    return 0
