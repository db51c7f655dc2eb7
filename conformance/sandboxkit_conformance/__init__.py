"""sandboxkit-conformance: the shared test suite every sandboxkit provider runs.

A provider package adopts it with two files in its tests directory (see the README):

``conftest.py``
    names the provider through fixtures: ``sandboxkit_provider`` (its registry name),
    ``sandboxkit_create_options`` (options for every sandbox the suite creates) and
    ``sandboxkit_expected_failures`` (known bugs, test name -> reason, run as strict xfail).

``test_conformance.py``
    one line: ``from sandboxkit_conformance.suite import *``.

The pytest plugin (:mod:`sandboxkit_conformance.plugin`) loads by itself through the ``pytest11``
entry point and stays inert for tests that are not part of the suite.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sandboxkit_conformance._target import (
        LABEL_KEY,
        SESSION_ENV,
        SUITE_VERSION,
        ConformanceTarget,
        MakeSecret,
        MakeVolume,
        SandboxPool,
        requires,
    )

__all__ = [
    "LABEL_KEY",
    "SESSION_ENV",
    "SUITE_VERSION",
    "ConformanceTarget",
    "MakeSecret",
    "MakeVolume",
    "SandboxPool",
    "requires",
]


def __getattr__(name: str) -> Any:
    """Load the names lazily: the CLI entry point imports this package without pytest."""
    if name not in __all__ and name != "__version__":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from sandboxkit_conformance import _target

    return _target.SUITE_VERSION if name == "__version__" else getattr(_target, name)
