"""Lines over a hijacked Docker stream (an attach or an attached exec): one out on stdin, stdout's back.

The stream is Docker's multiplexed one; stderr is dropped. Blocking, for a worker thread: every
read waits at most ``timeout`` seconds, and a failure, a timeout or a transport with no socket
(SSH) raises OSError.
"""

from __future__ import annotations

import socket
from typing import Any

from sandboxkit_docker import _dockerpy
from sandboxkit_docker._frames import STDOUT, FrameSplitter


class AttachedLines:
    """Send lines to the stream's stdin and read its stdout a line at a time."""

    def __init__(self, sock: Any, timeout: float) -> None:
        self._sock = sock
        self._raw = _dockerpy.raw_socket(sock)
        if not isinstance(self._raw, socket.socket):
            self.close()
            raise OSError("the engine's transport has no socket under the stream (SSH)")
        self._frames = FrameSplitter()
        self._out = bytearray()
        self._raw.setblocking(False)  # so that reading what http.client read ahead never waits
        self._frames.feed(_dockerpy.read_ahead(sock), self._keep)
        self._raw.settimeout(timeout)

    def _keep(self, stream: int, payload: memoryview) -> None:
        if stream == STDOUT:
            self._out.extend(payload)

    def send(self, line: bytes) -> None:
        self._raw.sendall(line + b"\n")

    def readline(self) -> bytes | None:
        """The next line of stdout, without its newline; None when the stream ended first."""
        while b"\n" not in self._out:
            data = self._raw.recv(1 << 16)
            if not data:
                return None
            self._frames.feed(data, self._keep)
        line, _, rest = bytes(self._out).partition(b"\n")
        self._out = bytearray(rest)
        return line

    def close(self) -> None:
        for closeable in (self._sock, self._raw):
            try:
                closeable.close()
            except OSError:
                pass
