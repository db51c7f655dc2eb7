"""Collecting one command's output: the cap, arrival order, incremental UTF-8 decoding."""

from __future__ import annotations

import builtins
import codecs
from collections.abc import Awaitable, Callable

from sandboxkit._errors import ErrorCode, SandboxError
from sandboxkit._types import ExecResult, OutputChunk, StreamName

#: Default cap on the output one command keeps (stdout and stderr together).
DEFAULT_MAX_OUTPUT = 10 * 1024 * 1024


def as_bytes(data: str | bytes | bytearray | memoryview, what: str) -> bytes:
    if isinstance(data, str):
        return data.encode()
    if isinstance(data, bytes | bytearray | memoryview):
        return bytes(data)
    raise SandboxError(ErrorCode.INVALID_ARGUMENT, f"{what} must be str or bytes, got {type(data).__name__}")


class Collector:
    """Keeps a command's output up to a cap, in arrival order, and forwards chunks live."""

    def __init__(self, cap: int, forward: Callable[[OutputChunk], Awaitable[None]] | None) -> None:
        self.cap, self.forward = cap, forward
        self.kept = 0
        self.truncated = False
        self.parts: dict[StreamName, list[bytes]] = {"stdout": [], "stderr": []}
        self.merged: builtins.list[bytes] = []
        self.decoders = {s: codecs.getincrementaldecoder("utf-8")("replace") for s in ("stdout", "stderr")}

    async def __call__(self, stream: StreamName, data: bytes) -> None:
        if not data:
            return
        room = self.cap - self.kept
        if room > 0:
            piece = data[:room]
            self.parts[stream].append(piece)
            self.merged.append(piece)
            self.kept += len(piece)
        if len(data) > max(room, 0):
            self.truncated = True
        if self.forward is not None:
            text = self.decoders[stream].decode(data)
            await self.forward(OutputChunk(stream=stream, data=data, text=text))

    def result(self, exit_code: int) -> ExecResult:
        return ExecResult(
            exit_code=exit_code,
            stdout_bytes=b"".join(self.parts["stdout"]),
            stderr_bytes=b"".join(self.parts["stderr"]),
            output_bytes=b"".join(self.merged),
            truncated=self.truncated,
        )


def with_result(err: SandboxError, result: ExecResult) -> SandboxError:
    err.result = result
    return err
