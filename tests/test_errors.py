"""The error taxonomy: codes, stdlib mix-ins, pickling, messages."""

from __future__ import annotations

import pickle

import pytest

import sandboxkit
from sandboxkit import (
    CapabilityNotSupportedError,
    CommandFailedError,
    CommandTimeoutError,
    ErrorCode,
    ExecResult,
    InvalidArgumentError,
    ProviderNotFoundError,
    SandboxError,
    SandboxNotFoundError,
)

SEED_CODES = {
    "NOT_INITIALIZED", "ALREADY_INITIALIZED", "AUTHENTICATION_FAILED", "SANDBOX_CREATION_FAILED",
    "SANDBOX_NOT_FOUND", "COMMAND_TIMEOUT", "COMMAND_FAILED", "FILE_OPERATION_FAILED",
    "RESOURCE_LIMIT_EXCEEDED", "VOLUME_ERROR", "INVALID_ARGUMENT", "ALREADY_EXISTS",
    "CAPABILITY_NOT_SUPPORTED", "PROVIDER_NOT_FOUND", "PROVIDER_UNAVAILABLE",
}  # fmt: skip


def test_every_design_code_exists() -> None:
    assert {c.value for c in ErrorCode} == SEED_CODES


@pytest.mark.parametrize(
    ("code", "cls", "stdlib"),
    [
        (ErrorCode.COMMAND_TIMEOUT, CommandTimeoutError, TimeoutError),
        (ErrorCode.SANDBOX_NOT_FOUND, SandboxNotFoundError, LookupError),
        (ErrorCode.PROVIDER_NOT_FOUND, ProviderNotFoundError, LookupError),
        (ErrorCode.INVALID_ARGUMENT, InvalidArgumentError, ValueError),
        (ErrorCode.CAPABILITY_NOT_SUPPORTED, CapabilityNotSupportedError, NotImplementedError),
        (ErrorCode.COMMAND_FAILED, CommandFailedError, Exception),
    ],
)
def test_code_builds_the_matching_subclass(code: ErrorCode, cls: type, stdlib: type) -> None:
    err = SandboxError(code, "boom", provider="docker", sandbox_id="abc")
    assert type(err) is cls
    assert isinstance(err, SandboxError)
    assert isinstance(err, stdlib)
    assert err.code is code
    assert str(err) == f"[{code}] boom (provider=docker, sandbox=abc)"


def test_codes_without_subclass_stay_sandbox_error() -> None:
    err = SandboxError(ErrorCode.VOLUME_ERROR, "no volume")
    assert type(err) is SandboxError
    assert err.code is ErrorCode.VOLUME_ERROR
    with pytest.raises(TypeError):
        SandboxError()


@pytest.mark.parametrize("code", list(ErrorCode))
def test_every_error_pickles(code: ErrorCode) -> None:
    err = SandboxError(code, "msg", provider="p", sandbox_id="s")
    if isinstance(err, CommandTimeoutError):
        err.with_result(ExecResult(exit_code=137, stdout_bytes=b"partial"))
    back = pickle.loads(pickle.dumps(err))
    assert type(back) is type(err)
    assert (back.code, back.message, back.provider, back.sandbox_id) == (code, "msg", "p", "s")
    if isinstance(err, CommandTimeoutError):
        assert back.result is not None
        assert back.result.stdout == "partial"


def test_errors_are_exported_with_public_module() -> None:
    assert SandboxError.__module__ == "sandboxkit"
    assert sandboxkit.ErrorCode("COMMAND_TIMEOUT") is ErrorCode.COMMAND_TIMEOUT


@pytest.mark.parametrize("kind", ["file_not_found", "permission_denied", "is_directory", "invalid_path", None])
def test_file_error_takes_the_documented_kinds(kind: str | None) -> None:
    from sandboxkit.spi import file_error

    err = file_error(kind, "/tmp/x", provider="p", sandbox_id="s")
    assert (err.code, err.kind, err.path) == (ErrorCode.FILE_OPERATION_FAILED, kind, "/tmp/x")


def test_file_error_refuses_an_unknown_kind() -> None:
    from sandboxkit.spi import file_error

    with pytest.raises(ValueError, match=r"file_error kind must be one of .*'not_found'"):
        file_error("not_found", "/tmp/x")
