"""``sandboxkit snapshot create ID | ls | rm SNAP...``: filesystem snapshots (``create --snapshot`` starts from one)."""

from __future__ import annotations

import argparse
import json

from sandboxkit._async_sandbox import SNAPSHOT_TTL


def add(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("snapshot", help="save a sandbox's filesystem; list and delete snapshots")
    cmds = p.add_subparsers(dest="snapshot_command", required=True, metavar="ACTION")
    c = cmds.add_parser("create", help="snapshot a running sandbox (it keeps running); prints the snapshot id")
    c.add_argument("sandbox_id", metavar="ID")
    c.add_argument("--ttl", type=float, default=SNAPSHOT_TTL, help="seconds until gc may reap it (default 30 days)")
    ls = cmds.add_parser("ls", help="list the snapshots sandboxkit made")
    ls.add_argument("--json", action="store_true", help="machine-readable output")
    rm = cmds.add_parser("rm", help="delete snapshots (refused while a sandbox started from one exists)")
    rm.add_argument("ids", nargs="+", metavar="SNAP")
    for cmd, handler in ((c, create), (ls, list_), (rm, remove)):
        cmd.add_argument("--provider", help="provider name (default: $SANDBOXKIT_PROVIDER, else docker)")
        cmd.set_defaults(handler=handler)


def create(args: argparse.Namespace) -> int:
    from sandboxkit._sync_sandbox import Sandbox

    print(Sandbox.from_id(args.sandbox_id, args.provider).snapshot(ttl=args.ttl).id)
    return 0


def list_(args: argparse.Namespace) -> int:
    from sandboxkit._snapshot import snapshots

    rows = snapshots(args.provider)
    if args.json:
        print(
            json.dumps(
                [
                    {
                        "id": s.id,
                        "provider": s.provider,
                        "created_at": s.created_at.isoformat() if s.created_at else None,
                        "expires_at": s.expires_at.isoformat() if s.expires_at else None,
                        "labels": dict(s.labels),
                    }
                    for s in rows
                ],
                indent=2,
            )
        )
        return 0
    for s in rows:
        created = f"{s.created_at:%Y-%m-%d %H:%M}" if s.created_at else "-"
        expires = f"{s.expires_at:%Y-%m-%d %H:%M}" if s.expires_at else "never"
        print(f"{s.id:<24} {created}  expires {expires}")
    return 0


def remove(args: argparse.Namespace) -> int:
    from sandboxkit._snapshot import Snapshot

    for snapshot_id in args.ids:
        Snapshot(id=snapshot_id, provider=args.provider or _default()).delete()
        print(snapshot_id)
    return 0


def _default() -> str:
    from sandboxkit._registry import default_provider_name

    return default_provider_name()
