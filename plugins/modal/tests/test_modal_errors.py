"""The one choke point: every modal exception class has a SandboxError code (no Docker needed)."""

from __future__ import annotations

import inspect

import modal.exception
import pytest
import synchronicity.exceptions
from sandboxkit_modal._errors import NATIVE_ERRORS, Op, map_error, translate

from sandboxkit import ErrorCode, FileOperationError, SandboxError


def _modal_exception_classes() -> list[type[BaseException]]:
    return [
        obj
        for obj in vars(modal.exception).values()
        if inspect.isclass(obj) and issubclass(obj, BaseException) and not issubclass(obj, Warning)
    ]


def test_every_modal_exception_class_is_mapped_explicitly() -> None:
    classes = _modal_exception_classes()
    assert len(classes) > 40  # the module really was scanned
    missing = [cls.__qualname__ for cls in classes if cls not in NATIVE_ERRORS]
    assert not missing, f"add these to sandboxkit_modal._errors.NATIVE_ERRORS: {missing}"
    warnings_ = [obj for obj in vars(modal.exception).values() if inspect.isclass(obj) and issubclass(obj, Warning)]
    assert warnings_
    assert all(w in NATIVE_ERRORS for w in warnings_)


@pytest.mark.parametrize("cls", _modal_exception_classes(), ids=lambda c: c.__qualname__)
def test_each_class_becomes_a_sandbox_error_with_its_code(cls: type[BaseException]) -> None:
    try:
        exc = cls("boom")  # type: ignore[call-arg]
    except TypeError:
        exc = cls("boom", "im-123")  # type: ignore[call-arg]  # ImageBuildError(message, image_id)
    err = map_error(exc)
    assert isinstance(err, SandboxError)
    assert err.provider == "modal"
    if cls in (modal.exception.NotFoundError, modal.exception.ConflictError):
        assert err.code == ErrorCode.SANDBOX_NOT_FOUND
    else:
        assert err.code == NATIVE_ERRORS[cls]
    assert err.message


def test_context_decides_what_not_found_means() -> None:
    missing = modal.exception.NotFoundError("App 'x' not found")
    assert map_error(missing, op=Op.CREATE).code == ErrorCode.SANDBOX_CREATION_FAILED
    assert map_error(missing, op=Op.SANDBOX).code == ErrorCode.SANDBOX_NOT_FOUND


def test_auth_errors_say_what_to_set() -> None:
    err = map_error(modal.exception.AuthError("Invalid token"))
    assert err.code == ErrorCode.AUTHENTICATION_FAILED
    assert "MODAL_TOKEN_ID" in err.message
    assert "MODAL_TOKEN_SECRET" in err.message


def test_filesystem_errors_carry_deepagents_kinds() -> None:
    cases = {
        modal.exception.SandboxFilesystemNotFoundError: "file_not_found",
        modal.exception.SandboxFilesystemIsADirectoryError: "is_directory",
        modal.exception.SandboxFilesystemPermissionError: "permission_denied",
        modal.exception.SandboxFilesystemNotADirectoryError: "invalid_path",
    }
    for cls, kind in cases.items():
        err = map_error(cls("nope: /x"), path="/x")
        assert isinstance(err, FileOperationError)
        assert (err.kind, err.path) == (kind, "/x")


def test_translate_leaves_other_exceptions_alone() -> None:
    with pytest.raises(KeyError), translate():
        raise KeyError("not modal's")
    with pytest.raises(SandboxError) as info, translate(sandbox_id="sb-1"):
        raise synchronicity.exceptions.UserCodeException(ValueError("x"))  # type: ignore[no-untyped-call]
    assert info.value.sandbox_id == "sb-1"
