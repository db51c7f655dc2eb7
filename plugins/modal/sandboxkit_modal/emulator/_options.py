"""Command-line options of the emulator (imports nothing heavy: the CLI loads this to build its help)."""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass, field

#: Registry references the emulator maps to local images unless told otherwise (first match wins).
DEFAULT_IMAGE_MAP: tuple[tuple[str, str], ...] = (
    ("python:*", "sandboxkit/base:bookworm"),
    ("debian:*", "sandboxkit/base:bookworm"),
    ("ubuntu:*", "sandboxkit/base:bookworm"),
    ("busybox*", "sandboxkit/busybox:latest"),
    ("alpine*", "sandboxkit/busybox:latest"),
)


@dataclass(frozen=True, kw_only=True)
class EmulatorConfig:
    """How one emulator runs."""

    #: TCP port on 127.0.0.1; 0 picks a free one
    port: int = 0
    #: the only credentials accepted; random per run when None
    token_id: str | None = None
    token_secret: str | None = None
    #: (glob pattern, local image) pairs tried in order; a reference present locally is used as is
    image_map: tuple[tuple[str, str], ...] = DEFAULT_IMAGE_MAP
    #: GPU mode handed to the Docker provider ("simulate" fakes nvidia-smi; "auto" needs real GPUs)
    gpu_mode: str = "simulate"
    #: log every RPC to stderr
    verbose: bool = False
    #: extra labels for every Docker sandbox, ``k=v`` (the emulator adds its own)
    labels: dict[str, str] = field(default_factory=dict)


def _mapping(text: str) -> tuple[str, str]:
    pattern, sep, image = text.partition("=")
    if not sep or not pattern or not image:
        raise argparse.ArgumentTypeError(f"expected PATTERN=LOCAL_IMAGE, got {text!r}")
    return pattern, image


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The emulator's options, shared by ``python -m sandboxkit_modal.emulator`` and the CLI."""
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (default: a free one)")
    parser.add_argument(
        "--token-id",
        default=os.environ.get("SANDBOXKIT_MODAL_EMULATOR_TOKEN_ID"),
        help="token id to accept (default: random; env SANDBOXKIT_MODAL_EMULATOR_TOKEN_ID)",
    )
    parser.add_argument(
        "--token-secret",
        default=os.environ.get("SANDBOXKIT_MODAL_EMULATOR_TOKEN_SECRET"),
        help="token secret to accept (default: random; env SANDBOXKIT_MODAL_EMULATOR_TOKEN_SECRET)",
    )
    parser.add_argument(
        "--image-map",
        action="append",
        type=_mapping,
        default=[],
        metavar="PATTERN=LOCAL_IMAGE",
        help="map registry references matching a glob to a local image, tried before the defaults "
        "(python:*, debian:*, ubuntu:* -> sandboxkit/base:bookworm; busybox*, alpine* -> sandboxkit/busybox:latest)",
    )
    parser.add_argument(
        "--gpu-mode",
        choices=["simulate", "auto", "off"],
        default=os.environ.get("SANDBOXKIT_DOCKER_GPU", "simulate"),
        help="GPU sandboxes: simulate (stand-in nvidia-smi, default), auto (real GPUs) or off (refuse)",
    )
    parser.add_argument("--verbose", "-v", action="store_true", help="log every RPC to stderr")


def config_from(args: argparse.Namespace) -> EmulatorConfig:
    """The EmulatorConfig for parsed arguments."""
    return EmulatorConfig(
        port=args.port,
        token_id=args.token_id,
        token_secret=args.token_secret,
        image_map=(*args.image_map, *DEFAULT_IMAGE_MAP),
        gpu_mode=args.gpu_mode,
        verbose=args.verbose,
    )
