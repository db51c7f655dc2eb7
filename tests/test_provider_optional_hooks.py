"""The optional SPI hooks refuse clearly on a provider that does not implement them; the SPI's shared defaults."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import pytest
from pydantic import BaseModel

import sandboxkit
from sandboxkit import ErrorCode, Sandbox, SandboxError
from sandboxkit.spi import (
    ExecExit,
    ExecRequest,
    OutputCallback,
    Provider,
    SandboxHandle,
    SandboxSpec,
    SandboxState,
    file_error,
)


class MinimalProvider(Provider):
    """Only the abstract methods: what a third-party provider must write, nothing optional."""

    name = "minimal"

    async def create(self, spec: SandboxSpec, options: BaseModel) -> SandboxHandle:
        raise NotImplementedError


@pytest.mark.parametrize(
    "hook",
    [
        lambda p: p.create_volume("v"),
        lambda p: p.list_volumes(),
        lambda p: p.delete_volume("v"),
        lambda p: p.gc(dry_run=True),
        lambda p: p.from_id("sb-1"),
        lambda p: p.from_name("app", "name"),
        lambda p: p.list(),
    ],
    ids=["create_volume", "list_volumes", "delete_volume", "gc", "from_id", "from_name", "list"],
)
def test_unimplemented_hooks_raise_capability_not_supported(hook: Callable[[Provider], Awaitable[Any]]) -> None:
    async def run() -> None:
        await hook(MinimalProvider())

    with pytest.raises(SandboxError) as err:
        anyio.run(run)
    assert err.value.code == ErrorCode.CAPABILITY_NOT_SUPPORTED
    assert err.value.provider == "minimal"
    assert "minimal" in err.value.message


@pytest.mark.parametrize("call", [Sandbox.from_id, Sandbox.from_name, Sandbox.list])
def test_a_misspelled_keyword_is_invalid_argument_naming_it(call: Callable[..., Any]) -> None:
    args = {Sandbox.from_id: ("sb-1",), Sandbox.from_name: ("app", "name"), Sandbox.list: ()}[call]
    with pytest.raises(SandboxError) as err:
        call(*args, provider="docker", atuh={"token": "x"})
    assert err.value.code == ErrorCode.INVALID_ARGUMENT
    assert "atuh" in err.value.message


class CountingHandle(SandboxHandle):
    """Files in a dict; counts how many reads run at once."""

    file_concurrency = 3

    def __init__(self) -> None:
        self.id = "counting"
        self.files = {f"/f{i}": str(i).encode() for i in range(10)}
        self.running = self.peak = 0

    async def read_file(self, path: str) -> bytes:
        self.running += 1
        self.peak = max(self.peak, self.running)
        await anyio.sleep(0.01)
        self.running -= 1
        if path not in self.files:
            raise file_error("file_not_found", path)
        return self.files[path]

    async def write_file(self, path: str, data: bytes) -> None:
        if path.endswith("/"):
            raise file_error("is_directory", path)
        self.files[path] = data

    async def exec(self, request: ExecRequest, on_output: OutputCallback) -> ExecExit:
        raise NotImplementedError

    async def terminate(self) -> None:
        pass

    async def status(self) -> SandboxState:
        return SandboxState.RUNNING


def test_default_read_files_is_bounded_ordered_and_reports_each_failure() -> None:
    handle = CountingHandle()
    paths = [*handle.files, "/missing"]
    results = anyio.run(handle.read_files, paths)
    assert results[:10] == [str(i).encode() for i in range(10)]
    assert isinstance(results[10], SandboxError)
    assert results[10].code == ErrorCode.FILE_OPERATION_FAILED
    assert handle.peak == 3


def test_default_write_files_reports_each_failure_in_order() -> None:
    handle = CountingHandle()
    results = anyio.run(handle.write_files, [("/a", b"1"), ("/dir/", b"2"), ("/b", b"3")])
    assert results[0] is None
    assert results[2] is None
    assert isinstance(results[1], SandboxError)
    assert handle.files["/a"] == b"1"
    assert handle.files["/b"] == b"3"


def test_distribution_version_names_the_installed_version_or_unknown() -> None:
    assert Provider.distribution_version("sandboxkit") == sandboxkit.__version__
    assert Provider.distribution_version("no-such-distribution-xyz") == "unknown"
