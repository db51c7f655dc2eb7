"""SandboxSpec validates every option before any provider is called."""

from __future__ import annotations

import pytest

from sandboxkit import ErrorCode, Sandbox, SandboxError, SandboxSpec
from sandboxkit._spec import build_spec, parse_gpu


@pytest.mark.parametrize(
    ("gpu", "expected"),
    [("T4", ("T4", 1)), ("a100-80gb", ("A100-80GB", 1)), ("H100:2", ("H100", 2)), ("h100!", ("H100!", 1)),
     ("B200+:8", ("B200+", 8))],
)  # fmt: skip
def test_gpu_strings(gpu: str, expected: tuple[str, int]) -> None:
    assert parse_gpu(gpu) == expected
    spec = build_spec({"gpu": gpu})
    assert (spec.gpu_type, spec.gpu_count) == expected


@pytest.mark.parametrize("gpu", ["", "T4:0", "T4:9", "H100:x", "T 4", ":2", "T4:2:3"])
def test_bad_gpu_strings(gpu: str) -> None:
    with pytest.raises(SandboxError) as info:
        build_spec({"gpu": gpu})
    assert info.value.code is ErrorCode.INVALID_ARGUMENT
    assert "gpu" in info.value.message


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"timeout": 0}, "timeout"),
        ({"timeout": -5}, "timeout"),
        ({"cpu": 0}, "cpu"),
        ({"memory_mib": -1}, "memory_mib"),
        ({"workdir": "app"}, "workdir"),
        ({"volumes": {"data": "vol"}}, "volumes"),
        ({"volumes": {"/": "vol"}}, "volumes"),
        ({"volumes": {"/data": "bad name!"}}, "volumes"),
        ({"initial_files": {"main.py": "x"}}, "initial_files"),
        ({"env": {"1BAD": "x"}}, "env"),
        ({"env": {"A-B": "x"}}, "env"),
        ({"name": "bad name"}, "name"),
        ({"name": "x" * 65}, "name"),
        ({"app": "-leading"}, "app"),
        ({"secrets": ["bad/name"]}, "secrets"),
        ({"idle_timeout": 0}, "idle_timeout"),
        ({"image": "has space"}, "image"),
        ({"no_such_option": 1}, "no_such_option"),
    ],
)
def test_invalid_option_names_the_field(options: dict[str, object], field: str) -> None:
    with pytest.raises(SandboxError) as info:
        build_spec(options)
    assert info.value.code is ErrorCode.INVALID_ARGUMENT
    assert isinstance(info.value, ValueError)
    assert field in info.value.message


def test_create_validates_before_any_provider_is_called() -> None:
    # options are validated before the provider is even resolved, so a bogus provider is not the error
    with pytest.raises(SandboxError) as info:
        Sandbox.create(provider="no-such-provider", timeout=-1)
    assert info.value.code is ErrorCode.INVALID_ARGUMENT


def test_defaults_and_normalisation() -> None:
    spec = build_spec({"workdir": "/app/../srv/", "gpu": "t4:1", "volumes": {"/data/": "v"}})
    assert spec.timeout == 300
    assert spec.app == "sandboxkit"
    assert spec.image is None
    assert spec.workdir == "/srv"
    assert spec.gpu == "T4"
    assert spec.volumes == {"/data": "v"}


def test_secret_values_never_show() -> None:
    spec = build_spec({"auth": {"token_id": "ak-visible", "token_secret": "as-TOPSECRET"}, "env": {"K": "v"}})
    assert "TOPSECRET" not in repr(spec)
    assert "TOPSECRET" not in str(spec)
    assert spec.auth_value("token_secret") == "as-TOPSECRET"
    with pytest.raises(SandboxError) as info:
        build_spec({"auth": {"token_secret": "as-TOPSECRET"}, "env": {"BAD-KEY": "TOPSECRET2"}})
    assert "TOPSECRET" not in str(info.value)
    assert info.value.__cause__ is None
    assert info.value.__suppress_context__


def test_spec_is_immutable() -> None:
    spec = SandboxSpec()
    with pytest.raises(Exception):  # noqa: B017 - pydantic raises its ValidationError subclass
        spec.timeout = 5  # type: ignore[misc]
