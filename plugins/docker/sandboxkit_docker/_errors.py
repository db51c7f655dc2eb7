"""The one choke point where docker-py and requests exceptions become SandboxError codes."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import docker.errors
import requests.exceptions
import urllib3.exceptions

from sandboxkit.spi import ErrorCode, SandboxError

PROVIDER = "docker"

#: Every native exception class the provider can meet, with the code it becomes by default.
NATIVE_ERRORS: dict[type[BaseException], ErrorCode] = {
    docker.errors.ImageNotFound: ErrorCode.SANDBOX_CREATION_FAILED,
    docker.errors.NotFound: ErrorCode.SANDBOX_NOT_FOUND,
    docker.errors.APIError: ErrorCode.PROVIDER_UNAVAILABLE,
    docker.errors.InvalidArgument: ErrorCode.INVALID_ARGUMENT,
    docker.errors.InvalidVersion: ErrorCode.PROVIDER_UNAVAILABLE,
    docker.errors.InvalidRepository: ErrorCode.INVALID_ARGUMENT,
    docker.errors.InvalidConfigFile: ErrorCode.PROVIDER_UNAVAILABLE,
    docker.errors.TLSParameterError: ErrorCode.AUTHENTICATION_FAILED,
    docker.errors.ContainerError: ErrorCode.PROVIDER_UNAVAILABLE,
    docker.errors.BuildError: ErrorCode.PROVIDER_UNAVAILABLE,
    docker.errors.ImageLoadError: ErrorCode.PROVIDER_UNAVAILABLE,
    docker.errors.StreamParseError: ErrorCode.PROVIDER_UNAVAILABLE,
    docker.errors.NullResource: ErrorCode.INVALID_ARGUMENT,
    docker.errors.DeprecatedMethod: ErrorCode.PROVIDER_UNAVAILABLE,
    docker.errors.ContextException: ErrorCode.PROVIDER_UNAVAILABLE,
    docker.errors.ContextNotFound: ErrorCode.PROVIDER_UNAVAILABLE,
    docker.errors.MissingContextParameter: ErrorCode.PROVIDER_UNAVAILABLE,
    docker.errors.ContextAlreadyExists: ErrorCode.PROVIDER_UNAVAILABLE,
    docker.errors.DockerException: ErrorCode.PROVIDER_UNAVAILABLE,
    requests.exceptions.ConnectionError: ErrorCode.PROVIDER_UNAVAILABLE,
    requests.exceptions.Timeout: ErrorCode.PROVIDER_UNAVAILABLE,
    requests.exceptions.RequestException: ErrorCode.PROVIDER_UNAVAILABLE,
    # docker-py reads raw streams (archives, exec sockets) through urllib3, unwrapped by requests
    urllib3.exceptions.HTTPError: ErrorCode.PROVIDER_UNAVAILABLE,
    urllib3.exceptions.ProxySchemeUnsupported: ErrorCode.PROVIDER_UNAVAILABLE,  # a ValueError, not an HTTPError
    ConnectionError: ErrorCode.PROVIDER_UNAVAILABLE,
    TimeoutError: ErrorCode.PROVIDER_UNAVAILABLE,
}

#: How the engine says a container is stopping or gone (409 answers).
_GONE_PHRASES = (
    "is not running",
    "is paused",
    "removal of container",
    "marked for removal",
    "is dead",
    "is restarting",
)

_UNREACHABLE = (
    "the Docker engine did not answer ({detail}); start it (`dockerd &` or `systemctl start docker`) "
    "or point DOCKER_HOST at a running engine"
)


_NO_GPU = (
    "the Docker engine cannot attach GPUs ({detail}); install the NVIDIA container toolkit, or set "
    "SANDBOXKIT_DOCKER_GPU=simulate to run GPU code paths without a GPU"
)
NO_DISK_QUOTA = (
    "this Docker engine cannot cap a sandbox's disk ({detail}); disk_mib needs a storage driver with "
    "per-container quotas (overlay2 on an xfs data-root mounted with pquota, or zfs), or overlay2 with the "
    "privileged sandboxkit-warden container, loop devices and mkfs.ext4 on the engine's host "
    "(`sandboxkit warden status`). Leave disk_mib unset, or use max_file_mib to cap the size of each file"
)


def map_error(
    exc: BaseException, *, sandbox_id: str | None = None, creating: bool = False, volume: str | None = None
) -> SandboxError:
    """Translate one native exception into a SandboxError with a code and a next step.

    ``creating``: the call creates a sandbox; ``volume``: the call manages that named volume.
    """
    where = {"provider": PROVIDER, "sandbox_id": sandbox_id}
    detail = _explain(exc)
    if volume is not None and isinstance(exc, docker.errors.APIError):
        return _volume_error(exc, volume, detail, where)
    if isinstance(exc, docker.errors.ImageNotFound):
        return SandboxError(
            ErrorCode.SANDBOX_CREATION_FAILED,
            f"image not found locally ({detail}); nothing is pulled implicitly here: build the offline base image "
            "with `sandboxkit images bootstrap`, or `docker pull`/`docker load` the image first",
            **where,
        )
    if isinstance(exc, docker.errors.APIError):
        status = exc.status_code or 0
        lower = detail.lower()
        if "could not select device driver" in lower or "unknown runtime specified nvidia" in lower:
            return SandboxError(ErrorCode.CAPABILITY_NOT_SUPPORTED, _NO_GPU.format(detail=detail), **where)
        if "storage-opt" in lower or "storage opt" in lower:
            return SandboxError(ErrorCode.CAPABILITY_NOT_SUPPORTED, NO_DISK_QUOTA.format(detail=detail), **where)
        if status == 404:
            if creating:
                return SandboxError(
                    ErrorCode.SANDBOX_CREATION_FAILED, f"docker could not create the sandbox: {detail}", **where
                )
            return SandboxError(
                ErrorCode.SANDBOX_NOT_FOUND,
                f"sandbox not found ({detail}); it was closed, expired or never existed",
                **where,
            )
        if status == 409 and creating:
            return SandboxError(
                ErrorCode.ALREADY_EXISTS, f"a sandbox with that name is already running in this app ({detail})", **where
            )
        if status == 409 and any(p in lower for p in _GONE_PHRASES):
            return SandboxError(
                ErrorCode.SANDBOX_NOT_FOUND,
                f"sandbox is no longer running ({detail}); it was closed or expired",
                **where,
            )
        if status == 500 and "multiple ids found" in lower:
            return SandboxError(
                ErrorCode.SANDBOX_NOT_FOUND, f"the id prefix is ambiguous ({detail}); pass the full id", **where
            )
        if status == 400:
            code = ErrorCode.SANDBOX_CREATION_FAILED if creating else ErrorCode.INVALID_ARGUMENT
            return SandboxError(code, f"docker rejected the request: {detail}", **where)
        if creating:
            return SandboxError(
                ErrorCode.SANDBOX_CREATION_FAILED, f"docker could not create the sandbox: {detail}", **where
            )
        return SandboxError(ErrorCode.PROVIDER_UNAVAILABLE, f"docker engine error: {detail}", **where)
    if isinstance(
        exc, (requests.exceptions.RequestException, urllib3.exceptions.HTTPError, ConnectionError, TimeoutError)
    ):
        return SandboxError(ErrorCode.PROVIDER_UNAVAILABLE, _UNREACHABLE.format(detail=detail), **where)
    if isinstance(exc, docker.errors.DockerException):
        if "fetching server api version" in detail.lower() or "connection" in detail.lower():
            return SandboxError(ErrorCode.PROVIDER_UNAVAILABLE, _UNREACHABLE.format(detail=detail), **where)
        for cls, code in NATIVE_ERRORS.items():
            if isinstance(exc, cls):
                return SandboxError(code, f"docker: {detail}", **where)
    return SandboxError(ErrorCode.PROVIDER_UNAVAILABLE, f"docker: {type(exc).__name__}: {detail}", **where)


def _volume_error(exc: docker.errors.APIError, volume: str, detail: str, where: dict[str, str | None]) -> SandboxError:
    status = exc.status_code or 0
    if status == 404:
        message = f"no volume named {volume!r}; create it with `sandboxkit volume create {volume}`"
    elif status == 409 and "in use" in detail.lower():
        message = f"volume {volume!r} is in use by a sandbox ({detail}); close the sandboxes that mount it first"
    elif status == 409:
        message = f"volume {volume!r} already exists ({detail})"
        return SandboxError(ErrorCode.ALREADY_EXISTS, message, **where)
    else:
        message = f"docker could not manage volume {volume!r}: {detail}"
    return SandboxError(ErrorCode.VOLUME_ERROR, message, **where)


def _explain(exc: BaseException) -> str:
    if isinstance(exc, docker.errors.APIError) and exc.explanation:
        text = exc.explanation
        return text.decode(errors="replace") if isinstance(text, bytes) else str(text)
    try:
        return str(exc) or type(exc).__name__
    except Exception:  # a native __str__ that breaks must not escape the choke point
        return type(exc).__name__


@contextlib.contextmanager
def translate(*, sandbox_id: str | None = None, creating: bool = False, volume: str | None = None) -> Iterator[None]:
    """Re-raise any docker-py, requests or urllib3 error as a SandboxError."""
    try:
        yield
    except SandboxError:
        raise
    except tuple(NATIVE_ERRORS) as exc:
        raise map_error(exc, sandbox_id=sandbox_id, creating=creating, volume=volume) from exc
