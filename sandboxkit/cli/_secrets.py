"""``sandboxkit secret create|ls|rm``: the local secret store (values are never printed)."""

from __future__ import annotations

import argparse
import json
import os
import sys


def add(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("secret", help="manage local secrets (one dotenv file per name, mode 0600)")
    cmds = p.add_subparsers(dest="secret_command", required=True, metavar="ACTION")
    c = cmds.add_parser("create", help="store a secret: KEY=VALUE pairs, or KEY alone to copy it from your environment")
    c.add_argument("name", help="secret name, as passed to secrets=[...]")
    c.add_argument("pairs", nargs="*", metavar="KEY[=VALUE]", help="KEY=VALUE, or KEY to take $KEY from this shell")
    c.add_argument("--from-dotenv", metavar="FILE", help="read KEY=VALUE lines from a dotenv file too")
    c.add_argument("--force", action="store_true", help="replace a secret that exists")
    c.set_defaults(handler=create)
    ls = cmds.add_parser("ls", help="list secrets with their keys (never their values)")
    ls.add_argument("--json", action="store_true", help="machine-readable output")
    ls.set_defaults(handler=list_)
    rm = cmds.add_parser("rm", help="delete secrets")
    rm.add_argument("names", nargs="+", metavar="NAME")
    rm.set_defaults(handler=remove)


def create(args: argparse.Namespace) -> int:
    from dotenv import dotenv_values

    from sandboxkit.secrets import create_secret

    values: dict[str, str] = {}
    if args.from_dotenv:
        values.update({k: v for k, v in dotenv_values(args.from_dotenv, interpolate=False).items() if v is not None})
    for pair in args.pairs:
        key, eq, value = pair.partition("=")
        if not eq:
            if key not in os.environ:
                print(f"error: {key} is not set in this environment; pass {key}=VALUE", file=sys.stderr)
                return 2
            value = os.environ[key]
        values[key] = value
    path = create_secret(args.name, values, overwrite=args.force)
    print(f"secret {args.name!r} stored with keys {', '.join(sorted(values))} ({path})", file=sys.stderr)
    print(args.name)
    return 0


def list_(args: argparse.Namespace) -> int:
    from sandboxkit.secrets import list_secrets

    rows = list_secrets()
    if args.json:
        print(
            json.dumps(
                [{"name": r.name, "keys": list(r.keys), "updated_at": r.updated_at.isoformat()} for r in rows], indent=2
            )
        )
        return 0
    for r in rows:
        print(f"{r.name:<24} {r.updated_at:%Y-%m-%d %H:%M}  {','.join(r.keys)}")
    return 0


def remove(args: argparse.Namespace) -> int:
    from sandboxkit.secrets import delete_secret

    for name in args.names:
        delete_secret(name)
        print(name)
    return 0
