"""The error taxonomy: every failure is a SandboxError with the right code, stdlib mix-in and a useful message."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sandboxkit import ErrorCode, InvalidArgumentError, ProviderNotFoundError, Sandbox, SandboxError
from sandboxkit_conformance._target import ConformanceTarget, SandboxPool
from sandboxkit_conformance.suite._support import assert_nothing_left, expect_error, probe_labels, unique

__all__ = ["TestErrors"]

#: The codes the contract names (DESIGN: the seed's ten plus five).
DOCUMENTED_CODES = {
    "NOT_INITIALIZED",
    "ALREADY_INITIALIZED",
    "AUTHENTICATION_FAILED",
    "SANDBOX_CREATION_FAILED",
    "SANDBOX_NOT_FOUND",
    "COMMAND_TIMEOUT",
    "COMMAND_FAILED",
    "FILE_OPERATION_FAILED",
    "RESOURCE_LIMIT_EXCEEDED",
    "VOLUME_ERROR",
    "INVALID_ARGUMENT",
    "ALREADY_EXISTS",
    "CAPABILITY_NOT_SUPPORTED",
    "PROVIDER_NOT_FOUND",
    "PROVIDER_UNAVAILABLE",
}

#: Create options the facade must refuse before the provider sees them, with the field each names.
BAD_CREATE_OPTIONS: list[tuple[dict[str, Any], str]] = [
    ({"sbkc_no_such_option": 1}, "sbkc_no_such_option"),
    ({"timeout": -1}, "timeout"),
    ({"workdir": "relative/dir"}, "workdir"),
    ({"gpu": "T4:99"}, "gpu"),
    ({"env": {"1BAD": "x"}}, "env"),
    ({"volumes": {"relative": "sbkc-volume"}}, "volumes"),
    ({"memory_mib": 0}, "memory_mib"),
]


class TestErrors:
    """Every provider: bad input and failures map to the documented codes, and messages say what to do."""

    def test_error_codes_are_the_documented_set(self) -> None:
        assert {c.value for c in ErrorCode} == DOCUMENTED_CODES

    def test_bad_create_options_are_invalid_argument(self, conformance: ConformanceTarget) -> None:
        for options, field in BAD_CREATE_OPTIONS:
            labels = probe_labels()
            with expect_error(ErrorCode.INVALID_ARGUMENT, f"Sandbox.create(**{options!r})") as caught:
                conformance.create(labels=labels, **options)
            assert isinstance(caught.error, InvalidArgumentError) and isinstance(caught.error, ValueError)
            assert field in str(caught.error), f"the message must name {field!r}: {caught.error}"
            assert_nothing_left(conformance, labels, f"a create was refused for a bad option ({field})")

    def test_unknown_provider_option_is_invalid_argument(self, conformance: ConformanceTarget) -> None:
        labels = probe_labels()
        with expect_error(ErrorCode.INVALID_ARGUMENT, "an unknown key in provider_options") as caught:
            conformance.create(labels=labels, provider_options={"sbkc_no_such_option": 1})
        assert "sbkc_no_such_option" in str(caught.error)
        assert_nothing_left(conformance, labels, "a create was refused for an unknown provider option")

    def test_missing_image_is_creation_failed(self, conformance: ConformanceTarget) -> None:
        labels, image = probe_labels(), f"sandboxkit-conformance/{unique('no-such-image')}:0"
        with expect_error(ErrorCode.SANDBOX_CREATION_FAILED, "an image that exists nowhere") as caught:
            conformance.create(labels=labels, image=image)
        assert image.split(":")[0] in str(caught.error), f"the message must name the image: {caught.error}"
        assert_nothing_left(conformance, labels, "a create failed on a missing image")

    def test_unknown_provider_is_provider_not_found(self) -> None:
        with expect_error(ErrorCode.PROVIDER_NOT_FOUND, "a provider name nobody registered") as caught:
            Sandbox.create("sbkc-no-such-provider")
        assert isinstance(caught.error, ProviderNotFoundError) and isinstance(caught.error, LookupError)

    def test_bad_command_arguments_are_invalid_argument(self, shared_sandbox: Sandbox) -> None:
        calls: list[tuple[str, Callable[[], Any]]] = [
            ("execute('')", lambda: shared_sandbox.execute("")),
            ("execute([])", lambda: shared_sandbox.execute([])),
            ("execute with a NUL byte", lambda: shared_sandbox.execute(["echo", "a\x00b"])),
            ("timeout=0", lambda: shared_sandbox.execute("true", timeout=0)),
            ("timeout=-1", lambda: shared_sandbox.execute("true", timeout=-1)),
            ("a bad env key", lambda: shared_sandbox.execute("true", env={"1BAD": "x"})),
            ("a relative cwd", lambda: shared_sandbox.execute("true", cwd="relative")),
        ]
        for what, call in calls:
            with expect_error(ErrorCode.INVALID_ARGUMENT, what):
                call()
        assert shared_sandbox.execute("echo still fine").stdout == "still fine\n"

    def test_errors_say_where_they_happened(self, sandboxes: SandboxPool, conformance: ConformanceTarget) -> None:
        sandbox = sandboxes.create()
        with expect_error(ErrorCode.COMMAND_FAILED, "check=True on `exit 5`") as caught:
            sandbox.execute("exit 5", check=True)
        error = caught.error
        assert (error.provider, error.sandbox_id) == (conformance.provider, sandbox.id)
        assert "COMMAND_FAILED" in str(error) and "5" in str(error)
        sandbox.close()
        with expect_error(ErrorCode.SANDBOX_NOT_FOUND, "execute() after close()") as caught:
            sandbox.execute("true")
        assert caught.error.provider == conformance.provider
        assert isinstance(caught.error, SandboxError) and isinstance(caught.error, LookupError)
