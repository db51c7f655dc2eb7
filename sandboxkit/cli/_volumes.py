"""``sandboxkit volume create|ls|rm``: a provider's named volumes (mount them with ``volumes=``)."""

from __future__ import annotations

import argparse
import json


def add(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("volume", help="manage named volumes that outlive sandboxes")
    cmds = p.add_subparsers(dest="volume_command", required=True, metavar="ACTION")
    c = cmds.add_parser("create", help="create named volumes")
    c.add_argument("names", nargs="+", metavar="NAME")
    ls = cmds.add_parser("ls", help="list the volumes sandboxkit created")
    ls.add_argument("--all", action="store_true", help="also volumes created by other tools")
    ls.add_argument("--json", action="store_true", help="machine-readable output")
    rm = cmds.add_parser("rm", help="delete volumes and their data")
    rm.add_argument("names", nargs="+", metavar="NAME")
    for cmd, handler in ((c, create), (ls, list_), (rm, remove)):
        cmd.add_argument("--provider", help="provider name (default: $SANDBOXKIT_PROVIDER, else docker)")
        cmd.set_defaults(handler=handler)


def create(args: argparse.Namespace) -> int:
    from sandboxkit import volumes

    for name in args.names:
        volumes.create(name, args.provider)
        print(name)
    return 0


def list_(args: argparse.Namespace) -> int:
    from sandboxkit import volumes

    rows = volumes.list(args.provider, unmanaged=args.all)
    if args.json:
        print(
            json.dumps(
                [
                    {
                        "name": v.name,
                        "provider": v.provider,
                        "created_at": v.created_at.isoformat() if v.created_at else None,
                        "managed": v.managed,
                    }
                    for v in rows
                ],
                indent=2,
            )
        )
        return 0
    for v in rows:
        created = f"{v.created_at:%Y-%m-%d %H:%M}" if v.created_at else "-"
        print(f"{v.name:<32} {created}" + ("" if v.managed else "  (not created by sandboxkit)"))
    return 0


def remove(args: argparse.Namespace) -> int:
    from sandboxkit import volumes

    for name in args.names:
        volumes.delete(name, args.provider)
        print(name)
    return 0
