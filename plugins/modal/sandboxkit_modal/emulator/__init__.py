"""A local emulation of Modal's sandbox API, backed by sandboxkit's Docker provider.

Run ``python -m sandboxkit_modal.emulator`` (or ``sandboxkit modal-emulator``): it prints
``MODAL_SERVER_URL=...``, ``MODAL_TOKEN_ID=...`` and ``MODAL_TOKEN_SECRET=...``; export them and the
real ``modal`` SDK (and sandboxkit's Modal provider) create sandboxes that are Docker containers on
this machine. Importing this package stays cheap; the server's modules load when it starts.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

from sandboxkit_modal.emulator._options import EmulatorConfig, add_arguments, config_from
from sandboxkit_modal.emulator._spawn import EmulatorProcess

if TYPE_CHECKING:
    from sandboxkit_modal.emulator._server import Emulator


def run(args: argparse.Namespace) -> int:
    """Serve with parsed arguments until interrupted; returns the exit code."""
    from sandboxkit_modal.emulator._server import serve

    config = config_from(args)
    logging.basicConfig(level=logging.INFO, format="[modal-emulator] %(message)s")
    if not config.verbose:  # grpclib logs every cancelled long-poll at INFO
        logging.getLogger("grpclib").setLevel(logging.WARNING)
    asyncio.run(serve(config))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m sandboxkit_modal.emulator``."""
    parser = argparse.ArgumentParser(
        prog="python -m sandboxkit_modal.emulator",
        description="Serve Modal's sandbox API on 127.0.0.1 so the real modal SDK runs offline against Docker.",
    )
    add_arguments(parser)
    return run(parser.parse_args(argv))


def __getattr__(name: str) -> object:
    if name == "Emulator":
        from sandboxkit_modal.emulator._server import Emulator

        return Emulator
    raise AttributeError(name)


__all__ = ["Emulator", "EmulatorConfig", "EmulatorProcess", "main", "run"]
