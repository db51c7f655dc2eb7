"""What both servicers share: UNIMPLEMENTED for every RPC not emulated, and request plumbing."""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine
from typing import Any, Protocol, TypeVar

from grpclib import GRPCError, Status

log = logging.getLogger("sandboxkit_modal.emulator")

C = TypeVar("C", bound=type)


class _Stream(Protocol):
    method_name: str


def _unimplemented(name: str) -> Callable[[Any, _Stream], Coroutine[Any, Any, None]]:
    async def handler(self: Any, stream: _Stream) -> None:
        log.warning("RPC %s is not emulated (answered UNIMPLEMENTED)", name)
        raise GRPCError(
            Status.UNIMPLEMENTED,
            f"{name} is not supported by the sandboxkit Modal emulator, which covers the sandbox lifecycle only",
        )

    handler.__name__ = name
    return handler


def answer_unimplemented(cls: C) -> C:
    """Fill every abstract RPC of a generated servicer base with an UNIMPLEMENTED answer."""
    for name in sorted(getattr(cls, "__abstractmethods__", ())):
        setattr(cls, name, _unimplemented(name))
    cls.__abstractmethods__ = frozenset()  # type: ignore[attr-defined]
    return cls
