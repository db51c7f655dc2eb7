"""sandboxkit: one API for isolated sandboxes on Docker, Modal or any registered provider."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from sandboxkit import volumes
from sandboxkit._admin import (
    agc,
    aprovider_capabilities,
    areset_providers,
    gc,
    provider_capabilities,
    register_provider,
    reset_providers,
    unregister_provider,
)
from sandboxkit._async_sandbox import AsyncSandbox
from sandboxkit._capabilities import Capability
from sandboxkit._errors import (
    CapabilityNotSupportedError,
    CommandFailedError,
    CommandTimeoutError,
    ErrorCode,
    FileOperationError,
    InvalidArgumentError,
    ProviderNotFoundError,
    SandboxError,
    SandboxNotFoundError,
)
from sandboxkit._factory import create_sandbox_factory, create_sandbox_factory_from_sandbox
from sandboxkit._network import HeaderInjection, NetworkPolicy
from sandboxkit._pool import AsyncPool, Pool
from sandboxkit._portal import portal
from sandboxkit._process import AsyncProcess, Process
from sandboxkit._registry import ProviderStatus, providers
from sandboxkit._snapshot import Snapshot, snapshots, snapshots_async
from sandboxkit._spec import SandboxSpec
from sandboxkit._stream import AsyncExecStream, ExecStream
from sandboxkit._sync_sandbox import Sandbox
from sandboxkit._types import (
    ExecResult,
    FileDownloadResult,
    FileUploadResult,
    NetworkEvent,
    OutputChunk,
    ProcessInfo,
    SandboxInfo,
    SandboxState,
    StaleSandbox,
    Tunnel,
    VolumeInfo,
)

try:
    __version__ = version("sandboxkit")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0"

__all__ = [
    "AsyncExecStream",
    "AsyncPool",
    "AsyncProcess",
    "AsyncSandbox",
    "Capability",
    "CapabilityNotSupportedError",
    "CommandFailedError",
    "CommandTimeoutError",
    "ErrorCode",
    "ExecResult",
    "ExecStream",
    "FileDownloadResult",
    "FileOperationError",
    "FileUploadResult",
    "HeaderInjection",
    "InvalidArgumentError",
    "NetworkEvent",
    "NetworkPolicy",
    "OutputChunk",
    "Pool",
    "Process",
    "ProcessInfo",
    "ProviderNotFoundError",
    "ProviderStatus",
    "Sandbox",
    "SandboxError",
    "SandboxInfo",
    "SandboxNotFoundError",
    "SandboxSpec",
    "SandboxState",
    "Snapshot",
    "StaleSandbox",
    "Tunnel",
    "VolumeInfo",
    "agc",
    "aprovider_capabilities",
    "areset_providers",
    "create_sandbox_factory",
    "create_sandbox_factory_from_sandbox",
    "gc",
    "portal",
    "provider_capabilities",
    "providers",
    "register_provider",
    "reset_providers",
    "snapshots",
    "snapshots_async",
    "unregister_provider",
    "volumes",
]

for _name in __all__:
    _obj = globals()[_name]
    if getattr(_obj, "__module__", "").startswith("sandboxkit._"):
        try:
            _obj.__module__ = "sandboxkit"
        except (AttributeError, TypeError):
            pass
