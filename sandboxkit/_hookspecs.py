"""Pluggy hooks that a sandboxkit plugin may implement (entry-point group ``sandboxkit``)."""

from __future__ import annotations

import argparse
from collections.abc import Iterable
from dataclasses import dataclass

import pluggy

PROJECT = "sandboxkit"
hookspec = pluggy.HookspecMarker(PROJECT)
#: Decorate a plugin module's hook functions with this.
hookimpl = pluggy.HookimplMarker(PROJECT)


@dataclass(frozen=True, kw_only=True)
class ProviderRecord:
    """A provider a plugin offers, named lazily so that listing imports no provider SDK."""

    #: the name users pass as ``provider=``
    name: str
    #: ``"package.module:ClassName"`` of the Provider subclass, imported on first use
    factory: str
    #: one line for ``sandboxkit providers``
    summary: str = ""
    #: what to run when the factory cannot be imported
    install_hint: str = ""


@hookspec
def sandboxkit_providers() -> Iterable[ProviderRecord]:  # type: ignore[empty-body]
    """Return the providers this plugin contributes. Called once per registry load; all results count."""


@hookspec
def sandboxkit_cli_commands(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add subcommands to the ``sandboxkit`` CLI. Keep imports inside the command's handler."""
