"""The emulator process: one grpclib server on 127.0.0.1 serving both the control plane and the router."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import sys
from typing import TextIO

import grpclib.events
import grpclib.server
from modal._utils.grpc_utils import custom_detail_codec

from sandboxkit_modal.emulator._auth import Credentials
from sandboxkit_modal.emulator._control import ControlPlane
from sandboxkit_modal.emulator._images import ImageStore
from sandboxkit_modal.emulator._options import EmulatorConfig
from sandboxkit_modal.emulator._router import TaskCommandRouter
from sandboxkit_modal.emulator._state import Backend
from sandboxkit_modal.emulator._stores import Stores

log = logging.getLogger("sandboxkit_modal.emulator")
HOST = "127.0.0.1"


class Emulator:
    """A running emulator. ``await start()``, read ``url`` and the tokens, ``await stop()``."""

    def __init__(self, config: EmulatorConfig | None = None) -> None:
        self.config = config or EmulatorConfig()
        self.credentials = Credentials(self.config.token_id, self.config.token_secret)
        self.backend = Backend(images=ImageStore(self.config.image_map), stores=Stores(), gpu_mode=self.config.gpu_mode)
        self._server = grpclib.server.Server(
            [
                ControlPlane(self.backend, self.credentials),  # type: ignore[abstract]  # the rest: UNIMPLEMENTED
                TaskCommandRouter(self.backend, self.credentials),  # type: ignore[abstract]
            ],
            status_details_codec=custom_detail_codec,
        )
        self.port = 0
        if self.config.verbose:
            grpclib.events.listen(self._server, grpclib.events.RecvRequest, _log_request)

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def env(self) -> dict[str, str]:
        """The variables that point the modal SDK at this emulator."""
        return {
            "MODAL_SERVER_URL": self.url,
            "MODAL_TOKEN_ID": self.credentials.token_id,
            "MODAL_TOKEN_SECRET": self.credentials.token_secret,
        }

    async def start(self) -> None:
        # proto IPPROTO_TCP, not 0: asyncio turns Nagle off only on accepted sockets whose proto says TCP,
        # and with Nagle on, every reply waits ~40 ms for the client's delayed ACK
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((HOST, self.config.port))
        self.port = sock.getsockname()[1]
        await self._server.start(sock=sock)
        self.backend.router_url = self.url  # one port serves both services

    async def stop(self) -> None:
        self._server.close()
        await self.backend.shutdown()
        await self._server.wait_closed()


async def _log_request(event: grpclib.events.RecvRequest) -> None:
    log.info("RPC %s", event.method_name.rsplit("/", 1)[-1])


async def serve(config: EmulatorConfig, out: TextIO = sys.stdout) -> None:
    """Run until SIGINT/SIGTERM; print the three export-ready lines first."""
    # the Docker provider reports GPU as a capability only in the mode the emulator serves GPUs in
    os.environ["SANDBOXKIT_DOCKER_GPU"] = config.gpu_mode
    emulator = Emulator(config)
    await emulator.start()
    for key, value in emulator.env().items():
        print(f"{key}={value}", file=out)
    out.flush()
    log.info("Modal emulator listening on %s (Ctrl+C stops it and removes its sandboxes)", emulator.url)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        log.info("stopping: terminating the emulator's sandboxes")
        await emulator.stop()
