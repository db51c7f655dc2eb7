"""What a provider author needs: the SPI base classes, value types, hook marker and error helpers.

A provider package implements :class:`Provider` and :class:`SandboxHandle`, exposes them with a
plugin module whose ``sandboxkit_providers()`` hook (decorated with :data:`hookimpl`) returns
:class:`ProviderRecord` entries, and registers that module under the ``sandboxkit`` entry-point group.
"""

from __future__ import annotations

from sandboxkit._errors import ErrorCode, FileOperationError, SandboxError, file_error
from sandboxkit._hookspecs import ProviderRecord, hookimpl
from sandboxkit._provider import NoOptions, OutputCallback, Provider, SandboxHandle
from sandboxkit._spec import SandboxSpec, parse_gpu
from sandboxkit._types import (
    ExecExit,
    ExecRequest,
    SandboxInfo,
    SandboxState,
    StaleSandbox,
    StreamName,
    VolumeInfo,
)

__all__ = [
    "ErrorCode",
    "ExecExit",
    "ExecRequest",
    "FileOperationError",
    "NoOptions",
    "OutputCallback",
    "Provider",
    "ProviderRecord",
    "SandboxError",
    "SandboxHandle",
    "SandboxInfo",
    "SandboxSpec",
    "SandboxState",
    "StaleSandbox",
    "StreamName",
    "VolumeInfo",
    "file_error",
    "hookimpl",
    "parse_gpu",
]
