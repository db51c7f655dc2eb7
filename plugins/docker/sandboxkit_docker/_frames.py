"""Docker's multiplexed attach stream: ``[stream, 0, 0, 0, length(4, big-endian)] + payload`` frames."""

from __future__ import annotations

import struct
from collections.abc import Callable

HEADER = struct.Struct(">BxxxI")
STDOUT = 1
STDERR = 2


class FrameSplitter:
    """Cuts a byte stream into frames; a frame split across reads waits for its rest."""

    def __init__(self) -> None:
        self._rest = bytearray()

    def feed(self, data: bytes, sink: Callable[[int, memoryview], None]) -> None:
        """Hand every whole frame's ``(stream, payload)`` to ``sink``; ``payload`` is valid during the call only."""
        if self._rest:
            self._rest += data
            source: bytes | bytearray = self._rest
        else:
            source = data
        with memoryview(source) as view:
            pos, size = 0, len(view)
            while size - pos >= HEADER.size:
                stream, length = HEADER.unpack_from(view, pos)
                end = pos + HEADER.size + length
                if end > size:
                    break
                sink(stream, view[pos + HEADER.size : end])
                pos = end
            self._rest = bytearray(view[pos:])
