"""Sandbox factories for agent frameworks: a new sandbox per invocation, or one shared sandbox."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sandboxkit._spec import build_spec
from sandboxkit._sync_sandbox import Sandbox

SandboxFactory = Callable[..., Sandbox]


def create_sandbox_factory(provider: str | None = None, **options: Any) -> SandboxFactory:
    """Return ``factory(runtime=None) -> Sandbox`` that creates a fresh sandbox on every call.

    The options are validated now, so a typo fails here and not in the middle of an agent run.
    ``runtime`` (e.g. deepagents' ToolRuntime) is accepted and ignored.
    """
    build_spec(options)

    def factory(runtime: Any = None) -> Sandbox:
        return Sandbox.create(provider, **options)

    return factory


def create_sandbox_factory_from_sandbox(sandbox: Sandbox) -> SandboxFactory:
    """Return ``factory(runtime=None) -> Sandbox`` that hands out the same live sandbox every time."""
    if not isinstance(sandbox, Sandbox):
        raise TypeError(f"expected a sandboxkit.Sandbox, got {type(sandbox).__name__}")

    def factory(runtime: Any = None) -> Sandbox:
        return sandbox

    return factory
