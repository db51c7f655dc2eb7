"""What a provider author needs: the SPI base classes, value types, hook marker and error helpers.

A provider package implements :class:`Provider` and :class:`SandboxHandle`, exposes them with a
plugin module whose ``sandboxkit_providers()`` hook (decorated with :data:`hookimpl`) returns
:class:`ProviderRecord` entries, and registers that module under the ``sandboxkit`` entry-point group.
"""

from __future__ import annotations

from sandboxkit._capabilities import Capability
from sandboxkit._errors import ErrorCode, FileOperationError, SandboxError, file_error
from sandboxkit._gpu import GpuMode, gpu_env, gpu_hint, gpu_refusal, nvidia_smi_script, resolve_gpu_mode
from sandboxkit._hookspecs import ProviderRecord, hookimpl
from sandboxkit._limits import DEFAULT_DISK_MIB, DEFAULT_MEMORY_MAX_MIB, default_cpu, default_memory_mib
from sandboxkit._linuxcaps import DEFAULT_CAPS, LINUX_CAPS, cap_mask
from sandboxkit._network import HeaderInjection, NetworkPolicy
from sandboxkit._processes import InSandboxProcesses, SupervisedProcesses
from sandboxkit._provider import NoOptions, OutputCallback, Provider, SandboxHandle, not_implemented
from sandboxkit._spec import SandboxSpec, parse_gpu
from sandboxkit._types import (
    ExecExit,
    ExecRequest,
    NetworkEvent,
    ProcessInfo,
    SandboxInfo,
    SandboxState,
    SnapshotInfo,
    SpawnRequest,
    StaleSandbox,
    StreamName,
    Tunnel,
    VolumeInfo,
)

__all__ = [
    "Capability",
    "DEFAULT_CAPS",
    "DEFAULT_DISK_MIB",
    "DEFAULT_MEMORY_MAX_MIB",
    "ErrorCode",
    "ExecExit",
    "ExecRequest",
    "FileOperationError",
    "GpuMode",
    "HeaderInjection",
    "InSandboxProcesses",
    "LINUX_CAPS",
    "NetworkEvent",
    "NetworkPolicy",
    "NoOptions",
    "OutputCallback",
    "ProcessInfo",
    "Provider",
    "ProviderRecord",
    "SandboxError",
    "SandboxHandle",
    "SandboxInfo",
    "SandboxSpec",
    "SandboxState",
    "SnapshotInfo",
    "SpawnRequest",
    "StaleSandbox",
    "StreamName",
    "SupervisedProcesses",
    "Tunnel",
    "VolumeInfo",
    "cap_mask",
    "default_cpu",
    "default_memory_mib",
    "file_error",
    "gpu_env",
    "gpu_hint",
    "gpu_refusal",
    "hookimpl",
    "not_implemented",
    "nvidia_smi_script",
    "parse_gpu",
    "resolve_gpu_mode",
]
