"""The optional SPI hooks (volumes, gc) refuse clearly on a provider that does not implement them."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import pytest
from pydantic import BaseModel

from sandboxkit import ErrorCode, SandboxError
from sandboxkit.spi import Provider, SandboxHandle, SandboxSpec


class MinimalProvider(Provider):
    """Only the abstract methods: what a third-party provider must write, nothing optional."""

    name = "minimal"

    async def create(self, spec: SandboxSpec, options: BaseModel) -> SandboxHandle:
        raise NotImplementedError

    async def from_id(self, sandbox_id: str) -> SandboxHandle:
        raise NotImplementedError


@pytest.mark.parametrize(
    "hook",
    [
        lambda p: p.create_volume("v"),
        lambda p: p.list_volumes(),
        lambda p: p.delete_volume("v"),
        lambda p: p.gc(dry_run=True),
    ],
    ids=["create_volume", "list_volumes", "delete_volume", "gc"],
)
def test_unimplemented_hooks_raise_capability_not_supported(hook: Callable[[Provider], Awaitable[Any]]) -> None:
    async def run() -> None:
        await hook(MinimalProvider())

    with pytest.raises(SandboxError) as err:
        anyio.run(run)
    assert err.value.code == ErrorCode.CAPABILITY_NOT_SUPPORTED
    assert err.value.provider == "minimal" and "minimal" in err.value.message
