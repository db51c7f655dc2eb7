"""Failures of a provider still being written: name the primitive to implement, not the exception.

A skeleton's methods raise NotImplementedError; the facade wraps that as "failed unexpectedly". The
plugin finds the NotImplementedError in the chain and says which method to write and what the
suite holds it to.
"""

from __future__ import annotations

from types import TracebackType

from sandboxkit.spi import Provider, SandboxHandle

#: What the suite holds each primitive to (the guide's table, in short).
PRIMITIVES = {
    "create": "return a running sandbox's handle (it sets its own id, name and app); keep spec.labels",
    "from_id": "return the handle of a live sandbox by id (RECONNECT); SANDBOX_NOT_FOUND when it is gone",
    "from_name": "return the handle of a live sandbox by app and name (NAMED)",
    "list": "return the live sandboxes, filtered by app, tags and labels (LIST)",
    "exec": "run request.argv, send output to on_output, return ExecExit; kill the whole tree at the timeout",
    "read_file": "return the file's bytes; spi.file_error(kind, path) when it cannot",
    "write_file": "write the bytes, creating parents; spi.file_error(kind, path) when it cannot",
    "terminate": "end the sandbox for real; idempotent",
    "status": "return the sandbox's SandboxState now",
    "create_volume": "create a named volume (the default volume fixture needs it; or override the fixture)",
    "delete_volume": "delete a named volume (the default volume fixture needs it; or override the fixture)",
}


def missing_primitive(exc: BaseException | None) -> str | None:
    """``Class.method is not implemented yet ...`` when a NotImplementedError is in ``exc``'s chain."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, NotImplementedError):
            return _describe(exc.__traceback__)
        exc = exc.__cause__ or exc.__context__
    return None


def _describe(tb: TracebackType | None) -> str | None:
    if tb is None:
        return None
    while tb.tb_next is not None:
        tb = tb.tb_next
    frame = tb.tb_frame
    method = frame.f_code.co_name
    owner = frame.f_locals.get("self")
    if method not in PRIMITIVES or not isinstance(owner, Provider | SandboxHandle):
        return None  # raised elsewhere (a helper, the SDK): the original failure says more
    return (
        f"{type(owner).__name__}.{method}() is not implemented yet (it raised NotImplementedError): "
        f"implement it: {PRIMITIVES[method]} (see the guide, conformance/README.md)"
    )
