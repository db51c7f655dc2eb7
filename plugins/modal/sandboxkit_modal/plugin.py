"""Entry point of the Modal provider: registers it the way any third-party plugin would.

Importing this module must stay cheap: it imports neither modal nor the provider.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterable

from sandboxkit.spi import ProviderRecord, hookimpl


@hookimpl
def sandboxkit_providers() -> Iterable[ProviderRecord]:
    """The Modal provider, imported on first use."""
    return [
        ProviderRecord(
            name="modal",
            factory="sandboxkit_modal.provider:ModalProvider",
            summary="Modal cloud sandboxes (GPUs, scale); MODAL_TOKEN_ID/MODAL_TOKEN_SECRET",
            install_hint="pip install sandboxkit-modal",
        )
    ]


@hookimpl
def sandboxkit_cli_commands(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """``sandboxkit modal-emulator``: a local, Docker-backed Modal server."""
    from sandboxkit_modal.emulator._options import add_arguments

    parser = subparsers.add_parser(
        "modal-emulator",
        help="run a local Modal emulator (sandboxes are Docker containers) until interrupted",
        description="Serve Modal's sandbox API on 127.0.0.1 so the real modal SDK runs offline against Docker.",
    )
    add_arguments(parser)
    parser.set_defaults(handler=_run_emulator)


def _run_emulator(args: argparse.Namespace) -> int:
    from sandboxkit_modal.emulator import run

    return run(args)
