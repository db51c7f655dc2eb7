"""Bad input gets INVALID_ARGUMENT with a message that says what to do, before any provider is asked.

No Docker: the spec is validated alone, and the per-call checks run against a sandbox attached to
a handle that fails the test if it is ever reached.
"""

from __future__ import annotations

import math
from typing import Any

import anyio
import pytest
from pydantic import BaseModel

from sandboxkit import AsyncSandbox, ErrorCode, SandboxError
from sandboxkit._spec import build_spec
from sandboxkit.spi import ExecExit, ExecRequest, OutputCallback, Provider, SandboxHandle, SandboxSpec, SandboxState


class Unreachable(SandboxHandle):
    """A handle whose every operation is a test failure: validation must stop the call first."""

    id = "sb-unreachable"

    async def exec(self, request: ExecRequest, on_output: OutputCallback) -> ExecExit:
        raise AssertionError("the provider was asked to run an invalid command")

    async def read_file(self, path: str) -> bytes:
        raise AssertionError("the provider was asked to read")

    async def write_file(self, path: str, data: bytes) -> None:
        raise AssertionError("the provider was asked to write")

    async def write_files(self, files: Any) -> list[SandboxError | None]:
        raise AssertionError("the provider was asked to write")

    async def read_files(self, paths: Any) -> list[bytes | SandboxError]:
        raise AssertionError("the provider was asked to read")

    async def terminate(self) -> None:
        pass

    async def status(self) -> SandboxState:
        return SandboxState.RUNNING


class Fake(Provider):
    name = "fake-validation"

    async def create(self, spec: SandboxSpec, options: BaseModel) -> SandboxHandle:
        raise AssertionError("create was reached")

    async def from_id(self, sandbox_id: str) -> SandboxHandle:
        raise AssertionError("from_id was reached")


def _refused(call: Any) -> SandboxError:
    async def run() -> None:
        await call(AsyncSandbox._attach(Fake(), Unreachable()))

    with pytest.raises(SandboxError) as err:
        anyio.run(run)
    assert err.value.code == ErrorCode.INVALID_ARGUMENT, err.value
    return err.value


@pytest.mark.parametrize("field", ["timeout", "idle_timeout", "cpu"])
@pytest.mark.parametrize("value", [math.inf, -math.inf, math.nan, "inf", "nan", True])
def test_create_refuses_non_finite_numbers(field: str, value: Any) -> None:
    with pytest.raises(SandboxError) as err:
        build_spec({field: value})
    assert err.value.code == ErrorCode.INVALID_ARGUMENT
    assert field in err.value.message
    assert "finite" in err.value.message or "greater than 0" in err.value.message or "bool" in err.value.message


def test_an_infinite_timeout_says_how_to_get_a_long_one() -> None:
    with pytest.raises(SandboxError) as err:
        build_spec({"timeout": math.inf})
    assert "finite" in err.value.message and "86400" in err.value.message


@pytest.mark.parametrize(
    "env, says",
    [
        ({"K": "a\x00b"}, "NUL"),
        ({"K\x00": "v"}, "must match"),
        ({"K\n": "v"}, "must match"),
        ({"": "v"}, "must match"),
        ({"K": 1}, "string"),
    ],
    ids=["nul-value", "nul-key", "newline-key", "empty-key", "int-value"],
)
def test_env_with_nul_or_bad_keys_is_refused_at_create_and_per_call(env: dict[str, Any], says: str) -> None:
    with pytest.raises(SandboxError) as err:
        build_spec({"env": env})
    assert err.value.code == ErrorCode.INVALID_ARGUMENT and says in err.value.message
    assert "a\x00b" not in err.value.message  # the value itself is never echoed
    per_call = _refused(lambda sb: sb.execute("true", env=env))
    assert says in per_call.message


@pytest.mark.parametrize("timeout", [math.inf, math.nan, -1, 0, True, "5"])
def test_per_call_timeout_must_be_positive_and_finite(timeout: Any) -> None:
    err = _refused(lambda sb: sb.execute("true", timeout=timeout))
    assert "positive, finite number of seconds" in err.message


@pytest.mark.parametrize(
    "files, says",
    [
        (None, "got NoneType"),
        ("/tmp/a", "got str"),
        ({"/tmp/a": b""}, "got dict"),
        ([("/tmp/a",)], "item 0 is a tuple, not a (path, content) pair"),
        ([("/tmp/a", b"x"), "/tmp/b"], "item 1 is a str"),
        ([(1, b"x")], "path of type int"),
        ([("/tmp/a", 5)], "content of type int"),
        ([("/tmp/a", None)], "content of type NoneType"),
    ],
)
def test_upload_files_takes_a_list_of_pairs(files: Any, says: str) -> None:
    err = _refused(lambda sb: sb.upload_files(files))
    assert says in err.message and "(path, content) pairs" in err.message


@pytest.mark.parametrize(
    "paths, says",
    [(None, "got NoneType"), ("/tmp/a", "got str"), ([b"/tmp/a"], "item 0 is a bytes"), (["/a", None], "item 1")],
)
def test_download_files_takes_a_list_of_paths(paths: Any, says: str) -> None:
    err = _refused(lambda sb: sb.download_files(paths))
    assert says in err.message and "list of absolute paths" in err.message
