"""The error taxonomy: one root, :class:`SandboxError`, with a machine-readable ``code``.

::

    SandboxError (.code: ErrorCode)
    ├── InvalidArgumentError        + ValueError          INVALID_ARGUMENT
    ├── SandboxNotFoundError        + LookupError         SANDBOX_NOT_FOUND
    ├── ProviderNotFoundError       + LookupError         PROVIDER_NOT_FOUND
    ├── CommandTimeoutError         + TimeoutError        COMMAND_TIMEOUT   (.result: partial output)
    ├── CommandFailedError                                COMMAND_FAILED    (.result)
    └── CapabilityNotSupportedError + NotImplementedError CAPABILITY_NOT_SUPPORTED

``SandboxError(code, message)`` builds the matching subclass, so a provider only has to name
the code. Messages say what to do next and never carry secret values: every value this process
read from the secret store (:func:`remember_secret_values`) is replaced by ``***`` in each
message, ``str()`` and ``repr()``, whoever built the error (a command's output on
COMMAND_FAILED, a provider's own text); ``.result`` keeps the raw output.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from enum import StrEnum
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    from sandboxkit._types import ExecResult


class ErrorCode(StrEnum):
    """Why an operation failed."""

    NOT_INITIALIZED = "NOT_INITIALIZED"
    ALREADY_INITIALIZED = "ALREADY_INITIALIZED"
    AUTHENTICATION_FAILED = "AUTHENTICATION_FAILED"
    SANDBOX_CREATION_FAILED = "SANDBOX_CREATION_FAILED"
    SANDBOX_NOT_FOUND = "SANDBOX_NOT_FOUND"
    COMMAND_TIMEOUT = "COMMAND_TIMEOUT"
    COMMAND_FAILED = "COMMAND_FAILED"
    FILE_OPERATION_FAILED = "FILE_OPERATION_FAILED"
    RESOURCE_LIMIT_EXCEEDED = "RESOURCE_LIMIT_EXCEEDED"
    VOLUME_ERROR = "VOLUME_ERROR"
    INVALID_ARGUMENT = "INVALID_ARGUMENT"
    ALREADY_EXISTS = "ALREADY_EXISTS"
    CAPABILITY_NOT_SUPPORTED = "CAPABILITY_NOT_SUPPORTED"
    PROVIDER_NOT_FOUND = "PROVIDER_NOT_FOUND"
    PROVIDER_UNAVAILABLE = "PROVIDER_UNAVAILABLE"


REDACTED = "***"
#: shorter values are not redacted: they are no secret, and would garble every message ("exit code 1")
MIN_SECRET_LENGTH = 4
_secret_values: set[str] = set()
_secret_lock = threading.Lock()


def remember_secret_values(values: Iterable[str]) -> None:
    """Redact these values from every SandboxError message of this process from now on."""
    with _secret_lock:
        _secret_values.update(v for v in values if isinstance(v, str) and len(v) >= MIN_SECRET_LENGTH)


def redact(text: str, extra: Iterable[str] = ()) -> str:
    """``text`` with every remembered secret value (and each of ``extra``) replaced by ``***``."""
    with _secret_lock:
        values = _secret_values | {v for v in extra if isinstance(v, str) and len(v) >= MIN_SECRET_LENGTH}
    for value in sorted(values, key=len, reverse=True):  # the longest first: one may contain another
        if value in text:
            text = text.replace(value, REDACTED)
    return text


class SandboxError(Exception):
    """Every failure sandboxkit reports. Inspect ``code``; ``provider`` and ``sandbox_id`` say where."""

    #: The code a subclass stands for (``None`` on the root: it takes any code).
    default_code: ClassVar[ErrorCode | None] = None
    _by_code: ClassVar[dict[ErrorCode, type[SandboxError]]] = {}

    code: ErrorCode
    message: str
    provider: str | None
    sandbox_id: str | None
    #: the command's (partial) result when the error ends a command (timeouts, failures, OOM)
    result: ExecResult | None = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.default_code is not None:
            SandboxError._by_code[cls.default_code] = cls

    def __new__(cls, code: ErrorCode | str | None = None, *args: Any, **kwargs: Any) -> SandboxError:
        target: type[SandboxError] = cls
        if cls is SandboxError and code is not None:
            target = SandboxError._by_code.get(ErrorCode(code), SandboxError)
        builtin = next(b for b in target.__mro__ if b.__module__ == "builtins")  # e.g. TimeoutError's own __new__
        return builtin.__new__(target)  # type: ignore[call-overload,no-any-return]

    def __init__(
        self,
        code: ErrorCode | str | None = None,
        message: str = "",
        *,
        provider: str | None = None,
        sandbox_id: str | None = None,
    ) -> None:
        resolved = code if code is not None else self.default_code
        if resolved is None:
            raise TypeError("SandboxError needs an ErrorCode")
        self.code = ErrorCode(resolved)
        self.message = redact(message)
        self.provider = provider
        self.sandbox_id = sandbox_id
        super().__init__(self.message)

    def redact(self, values: Iterable[str]) -> SandboxError:
        """Also redact ``values`` (e.g. a command's ``env=``) from this error's message; returns it."""
        self.message = redact(self.message, values)
        self.args = (self.message,)
        return self

    def __str__(self) -> str:
        where = ", ".join(f"{k}={v}" for k, v in (("provider", self.provider), ("sandbox", self.sandbox_id)) if v)
        return f"[{self.code}] {redact(self.message)}" + (f" ({where})" if where else "")

    def __repr__(self) -> str:
        return f"{type(self).__name__}(code={self.code.value!r}, message={redact(self.message)!r})"

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild, (type(self), self.code, self.message, self.provider, self.sandbox_id, self.__dict__))


def _rebuild(
    cls: type[SandboxError],
    code: ErrorCode,
    message: str,
    provider: str | None,
    sandbox_id: str | None,
    state: dict[str, Any],
) -> SandboxError:
    err = cls.__new__(cls, code)
    SandboxError.__init__(err, code, message, provider=provider, sandbox_id=sandbox_id)
    err.__dict__.update(state)
    return err


class InvalidArgumentError(SandboxError, ValueError):
    """An option or argument is malformed; the message names the field."""

    default_code = ErrorCode.INVALID_ARGUMENT


class SandboxNotFoundError(SandboxError, LookupError):
    """The sandbox is closed, past its lifetime, or never existed."""

    default_code = ErrorCode.SANDBOX_NOT_FOUND


class ProviderNotFoundError(SandboxError, LookupError):
    """No provider is registered under that name."""

    default_code = ErrorCode.PROVIDER_NOT_FOUND


class CapabilityNotSupportedError(SandboxError, NotImplementedError):
    """The provider does not declare the capability the call needs."""

    default_code = ErrorCode.CAPABILITY_NOT_SUPPORTED


class _ResultError(SandboxError):
    def with_result(self, result: ExecResult) -> _ResultError:
        self.result = result
        return self


class CommandTimeoutError(_ResultError, TimeoutError):
    """A command ran past its per-call timeout; its process tree was killed. ``result`` has the partial output."""

    default_code = ErrorCode.COMMAND_TIMEOUT


class CommandFailedError(_ResultError):
    """``check=True`` and the command exited non-zero. ``result`` has its output."""

    default_code = ErrorCode.COMMAND_FAILED


class FileOperationError(SandboxError):
    """A file could not be read or written. ``kind`` says why, in deepagents' words, when known."""

    default_code = ErrorCode.FILE_OPERATION_FAILED
    #: "file_not_found", "permission_denied", "is_directory" or "invalid_path"
    kind: str | None = None
    #: the path inside the sandbox
    path: str | None = None


_FILE_HINTS = {
    "file_not_found": "no such file or directory; check the path (paths are absolute inside the sandbox)",
    "permission_denied": "permission denied; write under the workdir or /tmp, or run as a user who may",
    "is_directory": "is a directory; name a file",
    "invalid_path": "invalid path; use an absolute path such as /tmp/file.txt",
}


def file_error(kind: str | None, path: str, detail: str = "", **where: str | None) -> FileOperationError:
    """Build FILE_OPERATION_FAILED for ``path`` with a message that says what to do.

    ``kind`` is one of ``"file_not_found"``, ``"permission_denied"``, ``"is_directory"``,
    ``"invalid_path"`` (deepagents' vocabulary, what batch results report), or None when the
    provider cannot tell (batch results then say ``"permission_denied"``). Any other kind is a
    provider bug and raises ValueError. ``where`` takes ``provider=`` and ``sandbox_id=``.
    """
    if kind is not None and kind not in _FILE_HINTS:
        raise ValueError(f"file_error kind must be one of {sorted(_FILE_HINTS)} or None, got {kind!r}")
    text = _FILE_HINTS.get(kind or "", "file operation failed")
    err = FileOperationError(
        ErrorCode.FILE_OPERATION_FAILED,
        f"{path}: {text}" + (f" ({detail})" if detail else ""),
        provider=where.get("provider"),
        sandbox_id=where.get("sandbox_id"),
    )
    err.kind, err.path = kind, path
    return err
