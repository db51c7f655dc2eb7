"""The public surface: a sorted __all__, every name importable, typed package."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest


@pytest.mark.parametrize("module", ["sandboxkit", "sandboxkit.spi", "sandboxkit.testing", "sandboxkit.volumes"])
def test_all_is_sorted_and_importable(module: str) -> None:
    mod = importlib.import_module(module)
    names = list(mod.__all__)
    assert names == sorted(names)
    for name in names:
        assert getattr(mod, name) is not None


def test_design_names_are_public() -> None:
    import sandboxkit

    for name in ("Sandbox", "AsyncSandbox", "SandboxError", "ErrorCode", "ExecResult", "FileUploadResult",
                 "FileDownloadResult", "SandboxInfo", "SandboxState", "Capability", "providers",
                 "create_sandbox_factory", "create_sandbox_factory_from_sandbox"):  # fmt: skip
        assert name in sandboxkit.__all__


def test_ships_py_typed() -> None:
    import sandboxkit_docker

    import sandboxkit

    for pkg in (sandboxkit, sandboxkit_docker):
        assert pkg.__file__ is not None
        assert (Path(pkg.__file__).parent / "py.typed").exists()
