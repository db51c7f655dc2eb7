"""The one choke point where modal (and grpclib) exceptions become SandboxError codes."""

from __future__ import annotations

import asyncio
import builtins
import contextlib
from collections.abc import Iterator
from enum import Enum

import grpclib.exceptions
import modal.exception as mx
import synchronicity.exceptions

from sandboxkit.spi import ErrorCode, SandboxError, file_error

PROVIDER = "modal"

CREDENTIALS_HINT = (
    "set MODAL_TOKEN_ID and MODAL_TOKEN_SECRET (create a token with `modal token new` or at "
    "https://modal.com/settings/tokens), or pass auth={'token_id': ..., 'token_secret': ...}"
)

#: Every exception class modal can raise (all of ``modal.exception``), plus the transport errors that
#: escape its task command router client unconverted, with the code each becomes by default.
NATIVE_ERRORS: dict[type[BaseException], ErrorCode] = {
    # credentials and permissions
    mx.AuthError: ErrorCode.AUTHENTICATION_FAILED,
    mx.PermissionDeniedError: ErrorCode.AUTHENTICATION_FAILED,
    # lookups
    mx.NotFoundError: ErrorCode.SANDBOX_NOT_FOUND,
    mx.AlreadyExistsError: ErrorCode.ALREADY_EXISTS,
    mx.SandboxTerminatedError: ErrorCode.SANDBOX_NOT_FOUND,
    mx.SandboxTimeoutError: ErrorCode.SANDBOX_NOT_FOUND,
    mx.ClientClosed: ErrorCode.SANDBOX_NOT_FOUND,
    # bad requests
    mx.InvalidError: ErrorCode.INVALID_ARGUMENT,
    mx.ConflictError: ErrorCode.SANDBOX_NOT_FOUND,
    mx.RequestSizeError: ErrorCode.INVALID_ARGUMENT,
    mx.SerializationError: ErrorCode.INVALID_ARGUMENT,
    mx.DeserializationError: ErrorCode.INVALID_ARGUMENT,
    mx.UnimplementedError: ErrorCode.CAPABILITY_NOT_SUPPORTED,
    # quotas, capacity, limits
    mx.ResourceExhaustedError: ErrorCode.RESOURCE_LIMIT_EXCEEDED,
    # commands
    mx.ExecTimeoutError: ErrorCode.COMMAND_TIMEOUT,
    mx.FunctionTimeoutError: ErrorCode.COMMAND_TIMEOUT,
    # images and volumes
    mx.ImageBuildError: ErrorCode.SANDBOX_CREATION_FAILED,
    mx.MountUploadTimeoutError: ErrorCode.SANDBOX_CREATION_FAILED,
    mx.VolumeUploadTimeoutError: ErrorCode.VOLUME_ERROR,
    # files
    mx.SandboxFilesystemError: ErrorCode.FILE_OPERATION_FAILED,
    mx.SandboxFilesystemNotFoundError: ErrorCode.FILE_OPERATION_FAILED,
    mx.SandboxFilesystemDirectoryNotEmptyError: ErrorCode.FILE_OPERATION_FAILED,
    mx.SandboxFilesystemIsADirectoryError: ErrorCode.FILE_OPERATION_FAILED,
    mx.SandboxFilesystemNotADirectoryError: ErrorCode.FILE_OPERATION_FAILED,
    mx.SandboxFilesystemPermissionError: ErrorCode.FILE_OPERATION_FAILED,
    mx.SandboxFilesystemFileTooLargeError: ErrorCode.FILE_OPERATION_FAILED,
    mx.SandboxFilesystemPathAlreadyExistsError: ErrorCode.FILE_OPERATION_FAILED,
    # the service itself
    mx.ConnectionError: ErrorCode.PROVIDER_UNAVAILABLE,
    mx.ServiceError: ErrorCode.PROVIDER_UNAVAILABLE,
    mx.InternalError: ErrorCode.PROVIDER_UNAVAILABLE,
    mx.InternalFailure: ErrorCode.PROVIDER_UNAVAILABLE,
    mx.DataLossError: ErrorCode.PROVIDER_UNAVAILABLE,
    mx.VersionError: ErrorCode.PROVIDER_UNAVAILABLE,
    mx.RemoteError: ErrorCode.PROVIDER_UNAVAILABLE,
    mx.ExecutionError: ErrorCode.PROVIDER_UNAVAILABLE,
    mx.SnapshotCreationError: ErrorCode.PROVIDER_UNAVAILABLE,
    mx.WorkspaceManagementError: ErrorCode.PROVIDER_UNAVAILABLE,
    mx.LogsFetchError: ErrorCode.PROVIDER_UNAVAILABLE,
    mx.InteractiveTimeoutError: ErrorCode.PROVIDER_UNAVAILABLE,
    mx.OutputExpiredError: ErrorCode.PROVIDER_UNAVAILABLE,
    mx.TimeoutError: ErrorCode.PROVIDER_UNAVAILABLE,
    mx._GRPCErrorWrapper: ErrorCode.PROVIDER_UNAVAILABLE,
    mx.Error: ErrorCode.PROVIDER_UNAVAILABLE,
    # raised by code paths sandboxkit never calls (functions, CLI, containers); mapped for completeness
    mx.InputCancellation: ErrorCode.PROVIDER_UNAVAILABLE,
    mx.ModuleNotMountable: ErrorCode.PROVIDER_UNAVAILABLE,
    mx._CliUserExecutionError: ErrorCode.PROVIDER_UNAVAILABLE,
    synchronicity.exceptions.UserCodeException: ErrorCode.PROVIDER_UNAVAILABLE,
    # warnings modal emits (never raised unless a warnings filter turns them into errors)
    mx.DeprecationError: ErrorCode.PROVIDER_UNAVAILABLE,
    mx.ServerWarning: ErrorCode.PROVIDER_UNAVAILABLE,
    mx.AsyncUsageWarning: ErrorCode.PROVIDER_UNAVAILABLE,
    mx.InternalAPIWarning: ErrorCode.PROVIDER_UNAVAILABLE,
    # transport errors the task command router client lets through
    grpclib.exceptions.GRPCError: ErrorCode.PROVIDER_UNAVAILABLE,
    grpclib.exceptions.StreamTerminatedError: ErrorCode.PROVIDER_UNAVAILABLE,
    grpclib.exceptions.ProtocolError: ErrorCode.PROVIDER_UNAVAILABLE,
    asyncio.TimeoutError: ErrorCode.PROVIDER_UNAVAILABLE,
    builtins.ConnectionError: ErrorCode.PROVIDER_UNAVAILABLE,
    OSError: ErrorCode.PROVIDER_UNAVAILABLE,
}

_FILE_KINDS: dict[type[BaseException], str] = {
    mx.SandboxFilesystemNotFoundError: "file_not_found",
    mx.SandboxFilesystemIsADirectoryError: "is_directory",
    mx.SandboxFilesystemNotADirectoryError: "invalid_path",
    mx.SandboxFilesystemPermissionError: "permission_denied",
}


class Op(Enum):
    """The kind of call being translated; it decides what a Modal "not found" means."""

    #: creating a sandbox: a missing app, image or secret fails the creation
    CREATE = "create"
    #: anything on an existing sandbox: "not found" means the sandbox is gone
    SANDBOX = "sandbox"


def _code_for(exc: BaseException) -> ErrorCode:
    for cls in type(exc).__mro__:
        if cls in NATIVE_ERRORS:
            return NATIVE_ERRORS[cls]
    return ErrorCode.PROVIDER_UNAVAILABLE


def map_error(
    exc: BaseException, *, op: Op = Op.SANDBOX, sandbox_id: str | None = None, path: str | None = None
) -> SandboxError:
    """Translate one native exception into a SandboxError with a code and a next step."""
    where = {"provider": PROVIDER, "sandbox_id": sandbox_id}
    detail = str(exc) or type(exc).__name__
    code = _code_for(exc)
    if isinstance(exc, mx.SandboxFilesystemError):
        kind = next((k for cls, k in _FILE_KINDS.items() if isinstance(exc, cls)), None)
        return file_error(kind, path or "", detail, **where)
    if code == ErrorCode.AUTHENTICATION_FAILED:
        return SandboxError(code, f"Modal rejected the credentials ({detail}); {CREDENTIALS_HINT}", **where)
    if isinstance(exc, mx.NotFoundError | mx.ConflictError):
        if op == Op.CREATE:
            return SandboxError(
                ErrorCode.SANDBOX_CREATION_FAILED, f"Modal could not create the sandbox: {detail}", **where
            )
        return SandboxError(
            ErrorCode.SANDBOX_NOT_FOUND,
            f"sandbox not found ({detail}); it was closed, expired or never existed",
            **where,
        )
    if code == ErrorCode.PROVIDER_UNAVAILABLE:
        return SandboxError(
            code,
            f"Modal did not answer as expected ({type(exc).__name__}: {detail}); check the network and "
            "MODAL_SERVER_URL (https://status.modal.com for outages), then retry",
            **where,
        )
    if code == ErrorCode.RESOURCE_LIMIT_EXCEEDED:
        return SandboxError(
            code, f"Modal refused for a quota, rate or capacity limit ({detail}); retry later or use less", **where
        )
    if code == ErrorCode.CAPABILITY_NOT_SUPPORTED:
        return SandboxError(code, f"this Modal server does not support the operation ({detail})", **where)
    if op == Op.CREATE and code == ErrorCode.INVALID_ARGUMENT:
        return SandboxError(code, f"Modal rejected the sandbox options: {detail}", **where)
    return SandboxError(code, f"Modal: {detail}", **where)


#: Exception classes ``translate`` catches (BaseException-only ones such as InputCancellation stay out).
CATCHABLE = tuple(cls for cls in NATIVE_ERRORS if issubclass(cls, Exception))


@contextlib.contextmanager
def translate(*, op: Op = Op.SANDBOX, sandbox_id: str | None = None, path: str | None = None) -> Iterator[None]:
    """Re-raise any modal or transport error as a SandboxError."""
    try:
        yield
    except SandboxError:
        raise
    except CATCHABLE as exc:
        raise map_error(exc, op=op, sandbox_id=sandbox_id, path=path) from exc
