"""Blocking docker-py calls run in worker threads, at most :data:`CALL_THREADS` at once per event loop.

docker-py keeps :data:`CALL_THREADS` connections to the daemon; more threads than that only open
connections it throws away afterwards, and each idle worker thread costs ~55 KiB of client memory.
The daemon is the bottleneck either way (it starts ~10 containers a second on 2 cores), so 50
sandboxes created at once take as long with 10 threads as with 50.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import anyio
import anyio.to_thread
from anyio.lowlevel import RunVar
from docker.constants import DEFAULT_MAX_POOL_SIZE

T = TypeVar("T")

#: Worker threads the Docker provider uses at once, per event loop: docker-py's connection pool size.
CALL_THREADS = DEFAULT_MAX_POOL_SIZE
_LIMITER: RunVar[anyio.CapacityLimiter] = RunVar("sandboxkit_docker_threads")


def limiter() -> anyio.CapacityLimiter:
    """This event loop's limiter for docker-py calls."""
    try:
        return _LIMITER.get()
    except LookupError:
        created = anyio.CapacityLimiter(CALL_THREADS)
        _LIMITER.set(created)
        return created


async def run_sync(func: Callable[..., T], *args: object) -> T:
    """``func(*args)`` in a worker thread, within this loop's limit."""
    return await anyio.to_thread.run_sync(func, *args, limiter=limiter())
