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
