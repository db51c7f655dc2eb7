"""Every native exception the provider can meet becomes a SandboxError code, at one choke point."""

from __future__ import annotations

import inspect
from types import ModuleType
from typing import Any

import docker.errors
import pytest
import requests
import requests.exceptions
import urllib3.exceptions
from sandboxkit_docker._errors import NATIVE_ERRORS, map_error, translate
from sandboxkit_docker.provider import DockerProvider

from sandboxkit import ErrorCode, Sandbox, SandboxError, portal
from sandboxkit.spi import SandboxSpec

# docker-py raises its own errors and lets requests' through; raw streams raise urllib3's
NATIVE_MODULES = (docker.errors, requests.exceptions, urllib3.exceptions)


def _classes(module: ModuleType) -> list[type[BaseException]]:
    root = module.__name__.split(".")[0]
    return [
        cls
        for cls in vars(module).values()
        if inspect.isclass(cls)
        and issubclass(cls, BaseException)
        and not issubclass(cls, Warning)  # warnings are issued, never raised at us
        and cls.__module__.split(".")[0] == root
    ]


def _instance(cls: type[BaseException]) -> BaseException:
    """A real instance, built with placeholder arguments for whatever its constructor requires."""
    required = [
        p
        for p in list(inspect.signature(cls.__init__).parameters.values())[1:]
        if p.default is p.empty and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
    ]
    for placeholder in ("placeholder", 0):
        try:
            exc = cls(*[placeholder] * len(required))
            str(exc)
            return exc
        except Exception:
            continue
    exc = cls.__new__(cls)
    exc.args = ("placeholder",)
    return exc


ALL_NATIVE = [cls for module in NATIVE_MODULES for cls in _classes(module)]


def test_the_native_exception_list_is_complete() -> None:
    assert len(ALL_NATIVE) > 60
    unmapped = [cls.__qualname__ for cls in ALL_NATIVE if not issubclass(cls, tuple(NATIVE_ERRORS))]
    assert unmapped == []


@pytest.mark.parametrize("cls", ALL_NATIVE, ids=lambda c: f"{c.__module__}.{c.__qualname__}")
def test_each_native_exception_becomes_a_sandbox_error(cls: type[BaseException]) -> None:
    native = _instance(cls)
    with pytest.raises(SandboxError) as err, translate(sandbox_id="abc"):
        raise native
    assert err.value.code in set(ErrorCode)
    assert err.value.provider == "docker"
    assert err.value.sandbox_id == "abc"
    assert err.value.__cause__ is native
    assert map_error(native).code == err.value.code


def _api_error(status: int, explanation: str) -> docker.errors.APIError:
    response = requests.Response()
    response.status_code = status
    response.reason = "engine said"
    response.url = "http+docker://localhost/v1.41/x"
    return docker.errors.APIError("engine error", response=response, explanation=explanation)


@pytest.mark.parametrize(
    ("status", "explanation", "context", "code"),
    [
        (404, "No such container: abc", {}, ErrorCode.SANDBOX_NOT_FOUND),
        (404, "No such image", {"creating": True}, ErrorCode.SANDBOX_CREATION_FAILED),
        (409, "Container abc is not running", {}, ErrorCode.SANDBOX_NOT_FOUND),
        (409, 'Conflict. The container name "/x" is already in use', {"creating": True}, ErrorCode.ALREADY_EXISTS),
        (500, "Multiple IDs found with provided prefix: ab", {}, ErrorCode.SANDBOX_NOT_FOUND),
        (400, "invalid reference format", {}, ErrorCode.INVALID_ARGUMENT),
        (400, "Invalid container name", {"creating": True}, ErrorCode.SANDBOX_CREATION_FAILED),
        (
            500,
            "--storage-opt is supported only for overlay over xfs with 'pquota' mount option",
            {"creating": True},
            ErrorCode.CAPABILITY_NOT_SUPPORTED,
        ),
        (
            500,
            'could not select device driver "" with capabilities: [[gpu]]',
            {"creating": True},
            ErrorCode.CAPABILITY_NOT_SUPPORTED,
        ),
        (400, "Unknown runtime specified nvidia", {"creating": True}, ErrorCode.CAPABILITY_NOT_SUPPORTED),
        (404, "get vol: no such volume", {"volume": "vol"}, ErrorCode.VOLUME_ERROR),
        (409, "remove vol: volume is in use - [abc]", {"volume": "vol"}, ErrorCode.VOLUME_ERROR),
        (500, "something broke", {}, ErrorCode.PROVIDER_UNAVAILABLE),
        (500, "something broke", {"creating": True}, ErrorCode.SANDBOX_CREATION_FAILED),
    ],
)
def test_engine_errors_map_by_status_and_explanation(
    status: int, explanation: str, context: dict[str, Any], code: ErrorCode
) -> None:
    assert map_error(_api_error(status, explanation), **context).code == code


def test_an_engine_that_does_not_answer_is_provider_unavailable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    provider = DockerProvider()
    with pytest.raises(SandboxError) as err:
        portal().call(lambda: provider.create(SandboxSpec(), DockerProvider.options_type()))
    assert err.value.code == ErrorCode.PROVIDER_UNAVAILABLE
    assert "DOCKER_HOST" in err.value.message


@pytest.mark.usefixtures("docker_engine")
def test_a_missing_image_and_a_removed_sandbox_map_from_the_real_engine(docker_engine: Any) -> None:
    with pytest.raises(SandboxError) as missing:
        Sandbox.create(image="sandboxkit/not-here:never", provider_options={"pull": "never"})
    assert missing.value.code == ErrorCode.SANDBOX_CREATION_FAILED
    sb = Sandbox.create()
    docker_engine.api.remove_container(sb.id, force=True)  # removed behind the client's back
    with pytest.raises(SandboxError) as gone:
        sb.execute("true")
    assert gone.value.code == ErrorCode.SANDBOX_NOT_FOUND
    with pytest.raises(SandboxError) as reconnect:
        Sandbox.from_id(sb.id)
    assert reconnect.value.code == ErrorCode.SANDBOX_NOT_FOUND
    sb.close()
