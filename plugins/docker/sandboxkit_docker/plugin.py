"""Entry point of the Docker provider: registers it the way any third-party plugin would.

Importing this module must stay cheap: it imports neither docker nor the provider.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterable

from sandboxkit.spi import ProviderRecord, hookimpl


@hookimpl
def sandboxkit_providers() -> Iterable[ProviderRecord]:
    """The Docker provider, imported on first use."""
    return [
        ProviderRecord(
            name="docker",
            factory="sandboxkit_docker.provider:DockerProvider",
            summary="local containers through the Docker engine (offline, no account)",
            install_hint="pip install sandboxkit-docker",
        )
    ]


@hookimpl
def sandboxkit_cli_commands(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """``sandboxkit images bootstrap``: build the offline base image."""
    images = subparsers.add_parser("images", help="offline images for the Docker provider")
    sub = images.add_subparsers(dest="images_command", required=True)
    boot = sub.add_parser("bootstrap", help="build the default image without any registry")
    boot.add_argument(
        "--kind",
        choices=["debian", "busybox"],
        default="debian",
        help="debian: bash, coreutils, procps, python3 (default); busybox: 2 MB, no python",
    )
    boot.add_argument("--tag", help="image tag (default: the provider's default image for the kind)")
    boot.add_argument("--mirror", help="Debian mirror URL (default: the one apt uses)")
    boot.add_argument("--force", action="store_true", help="rebuild even if the image exists")
    boot.set_defaults(handler=_bootstrap)

    warden = subparsers.add_parser(
        "warden", help="the container that ends Docker sandboxes past their timeout or idle_timeout from outside"
    )
    actions = warden.add_subparsers(dest="warden_command", required=True)
    status = actions.add_parser("status", help="whether the warden runs, its version and last log lines")
    status.add_argument("--json", action="store_true", help="print JSON")
    status.set_defaults(handler=_warden_status)
    actions.add_parser("start", help="start it now (every create starts it anyway)").set_defaults(handler=_warden_start)
    actions.add_parser(
        "stop", help="remove it; the next create starts it again unless SANDBOXKIT_DOCKER_WARDEN=off"
    ).set_defaults(handler=_warden_stop)


def _bootstrap(args: argparse.Namespace) -> int:
    import sys

    from sandboxkit_docker.images import BootstrapError, bootstrap

    def progress(line: str) -> None:
        print(f"[images] {line}", file=sys.stderr, flush=True)

    try:
        tag = bootstrap(args.kind, tag=args.tag, mirror=args.mirror, force=args.force, progress=progress)
    except BootstrapError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(tag)
    return 0


def _warden_call(action: str) -> tuple[int, object]:
    import sys

    import docker

    from sandboxkit_docker import _warden

    try:
        client = docker.from_env(timeout=10)
        try:
            func = {"status": _warden.status, "start": _warden.ensure, "stop": _warden.stop}[action]
            return 0, func(client.api)
        finally:
            client.close()
    except Exception as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1, None


def _warden_status(args: argparse.Namespace) -> int:
    import json

    code, found = _warden_call("status")
    if code or not isinstance(found, dict):
        return code or 1
    if args.json:
        print(json.dumps(found, indent=2))
        return 0
    current = "" if found["current"] or found["version"] is None else " (another sandboxkit version's)"
    print(f"{found['name']}: {found['state']}{current}" + ("" if found["enabled"] else "; off in this environment"))
    if found["started_at"]:
        print(f"started {found['started_at']}, engine socket {found['socket']}")
        print("mounts disk caps" if found["mounts_disk_caps"] else "cannot mount disk caps (see docs/security.md)")
    for line in found["log"]:
        print(f"  {line}")
    return 0 if found["state"] == "running" else 3


def _warden_start(args: argparse.Namespace) -> int:
    code, _ = _warden_call("start")
    return code


def _warden_stop(args: argparse.Namespace) -> int:
    code, removed = _warden_call("stop")
    if not code:
        print("removed" if removed else "no warden was running")
    return code
