"""Default implementations of the provider hooks that resource tests need (volumes, secrets).

They go through the ``sandboxkit`` CLI, as a user would: ``sandboxkit volume create NAME
--provider P`` and ``sandboxkit secret create NAME KEY=VALUE``. A provider whose volumes or
secrets live elsewhere overrides ``sandboxkit_make_volume`` / ``sandboxkit_make_secret``.
"""

from __future__ import annotations

import contextlib
import io
import uuid
from collections.abc import Callable, Mapping, Sequence

import pytest

from sandboxkit_conformance._target import MakeSecret, MakeVolume


def unique_name(kind: str) -> str:
    """A name no other test run uses: ``sbkc-<kind>-<random>``."""
    return f"sbkc-{kind}-{uuid.uuid4().hex[:10]}"


def run_cli(args: Sequence[str], override: str) -> None:
    """Run a ``sandboxkit`` command in-process; fail the test with what to do when it does not work."""
    from sandboxkit.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(list(args))
        except SystemExit as exc:  # argparse: the command does not exist here
            code = exc.code if isinstance(exc.code, int) else 2
    if code != 0:
        pytest.fail(
            f"`sandboxkit {' '.join(args[:2])} ...` failed (exit {code}): {err.getvalue().strip()[-500:]}\n"
            f"the suite uses it by default; override the {override} fixture in your conftest to create it "
            "the way your provider needs",
            pytrace=False,
        )


def cli_volumes(provider: str) -> tuple[MakeVolume, Callable[[], None]]:
    """``make_volume`` through ``sandboxkit volume``, and a cleanup that removes what it made."""
    made: list[str] = []

    def make() -> str:
        name = unique_name("vol")
        run_cli(["volume", "create", name, "--provider", provider], "sandboxkit_make_volume")
        made.append(name)
        return name

    def cleanup() -> None:
        for name in made:
            with contextlib.suppress(BaseException):
                run_cli(["volume", "rm", name, "--provider", provider], "sandboxkit_make_volume")

    return make, cleanup


def cli_secrets() -> tuple[MakeSecret, Callable[[], None]]:
    """``make_secret`` through ``sandboxkit secret`` (the local store), and a cleanup."""
    made: list[str] = []

    def make(values: Mapping[str, str]) -> str:
        name = unique_name("secret")
        run_cli(["secret", "create", name, *(f"{k}={v}" for k, v in values.items())], "sandboxkit_make_secret")
        made.append(name)
        return name

    def cleanup() -> None:
        for name in made:
            with contextlib.suppress(BaseException):
                run_cli(["secret", "rm", name], "sandboxkit_make_secret")

    return make, cleanup
