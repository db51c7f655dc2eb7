"""One background event loop that runs the async core for every sync ``Sandbox``."""

from __future__ import annotations

import atexit
import queue
import threading
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import anyio
from anyio.from_thread import BlockingPortal

T = TypeVar("T")

_lock = threading.Lock()
_portal: BlockingPortal | None = None
_thread: threading.Thread | None = None
_open: set[Any] = set()  # strong: a sandbox dropped without close() is still closed at exit


def _serve(ready: queue.Queue[BlockingPortal]) -> None:
    async def main() -> None:
        async with BlockingPortal() as portal:
            ready.put(portal)
            await portal.sleep_until_stopped()

    anyio.run(main)


def portal() -> BlockingPortal:
    """The shared portal, started on first use in a daemon thread."""
    global _portal, _thread
    with _lock:
        if _portal is None or _thread is None or not _thread.is_alive():
            ready: queue.Queue[BlockingPortal] = queue.Queue()
            _thread = threading.Thread(target=_serve, args=(ready,), name="sandboxkit-loop", daemon=True)
            _thread.start()
            _portal = ready.get()
        return _portal


def call(func: Callable[..., Awaitable[T]], *args: Any) -> T:
    """Run ``func(*args)`` on the shared loop and wait for its result."""
    return portal().call(func, *args)


def track(sandbox: Any) -> None:
    """Close ``sandbox`` at interpreter exit if the program forgot to."""
    _open.add(sandbox)


def untrack(sandbox: Any) -> None:
    """Stop tracking a closed sandbox."""
    _open.discard(sandbox)


@atexit.register
def _close_forgotten() -> None:
    for sandbox in list(_open):
        try:
            sandbox.close()
        except Exception:
            pass
    _close_providers()


def _close_providers() -> None:
    """Close the registry's provider instances: on the shared loop when it runs, else on a new one."""
    from sandboxkit._registry import registry

    try:
        if _portal is not None and _thread is not None and _thread.is_alive():
            _portal.call(registry.aclose)
        else:
            anyio.run(registry.aclose)
    except Exception:  # at exit, closing is best effort
        pass
