"""GPUs for Docker sandboxes: real NVIDIA passthrough, an explicit simulation, or a clear refusal.

The mode comes from ``provider_options={"gpu_mode": ...}``, else ``$SANDBOXKIT_DOCKER_GPU``, else
``auto``:

- ``auto``: pass real GPUs through when the engine has the ``nvidia`` runtime or (local engine) the
  host has ``/dev/nvidia<N>`` device nodes; otherwise refuse before any container exists.
- ``simulate``: no GPU is attached; a stand-in ``nvidia-smi`` in the sandbox reports the requested
  type and count, and the usual CUDA variables are set, so GPU code paths run offline.
- ``off``: refuse every ``gpu=``.

The provider class declares Capability.GPU; a provider instance reports it as current only when
``$SANDBOXKIT_DOCKER_GPU`` is ``simulate``, or in ``auto`` when the engine can pass GPUs through, so
the facade refuses ``gpu=`` elsewhere before any container exists, naming the simulate switch
(:data:`HINT`). A sandbox's ``gpu_mode`` option picks among what the instance offers: ``off``
refuses, ``simulate`` simulates even on an engine with real GPUs.
"""

from __future__ import annotations

import glob
import os
from dataclasses import dataclass, field
from typing import Any

from sandboxkit.spi import GpuMode, gpu_env, gpu_hint, gpu_refusal, nvidia_smi_script, resolve_gpu_mode

ENV = "SANDBOXKIT_DOCKER_GPU"
Mode = GpuMode
NVIDIA_SMI = "/usr/bin/nvidia-smi"


def resolve_mode(option: str | None) -> Mode:
    """The GPU mode: the provider option, else ``$SANDBOXKIT_DOCKER_GPU``, else ``auto``."""
    return resolve_gpu_mode(option, ENV, "docker")


@dataclass(frozen=True)
class GpuPlan:
    """How one sandbox gets its GPUs: container kwargs, env vars and files to place before start."""

    kind: str
    count: int
    simulated: bool
    kwargs: dict[str, Any] = field(default_factory=dict)

    @property
    def spec(self) -> str:
        return self.kind if self.count == 1 else f"{self.kind}:{self.count}"

    def env(self) -> dict[str, str]:
        return gpu_env(self.kind, self.count, simulated=self.simulated)

    def files(self) -> list[tuple[str, bytes]]:
        """Executables to place in the container (the stand-in nvidia-smi when simulating)."""
        return [(NVIDIA_SMI, nvidia_smi_script(self.kind, self.count).encode())] if self.simulated else []


#: How to get GPU sandboxes on a machine without GPUs.
HINT = gpu_hint(ENV)


def host_has_gpus(runtimes: frozenset[str], local_engine: bool) -> bool:
    """True when ``auto`` mode can pass real GPUs through: the NVIDIA runtime, or local device nodes."""
    return "nvidia" in runtimes or (local_engine and bool(glob.glob("/dev/nvidia[0-9]*")))


def plan(kind: str, count: int, mode: Mode, runtimes: frozenset[str], local_engine: bool) -> GpuPlan:
    """Decide how to give a sandbox ``count`` GPUs of ``kind``, or refuse before anything is created."""
    if mode == "simulate":
        return GpuPlan(kind, count, simulated=True)
    if mode == "auto":
        if "nvidia" in runtimes:  # the NVIDIA container toolkit reads NVIDIA_VISIBLE_DEVICES (see env())
            return GpuPlan(kind, count, simulated=False, kwargs={"runtime": "nvidia"})
        nodes = sorted(glob.glob("/dev/nvidia[0-9]*")) if local_engine else []
        if len(nodes) >= count:
            extra = [p for p in ("/dev/nvidiactl", "/dev/nvidia-uvm", "/dev/nvidia-uvm-tools") if os.path.exists(p)]
            return GpuPlan(
                kind, count, simulated=False, kwargs={"devices": [f"{p}:{p}:rwm" for p in nodes[:count] + extra]}
            )
        have = f"the host has {len(nodes)} NVIDIA device node(s)" if nodes else "the engine has no NVIDIA runtime"
        reason = f"gpu={kind if count == 1 else f'{kind}:{count}'!r} cannot be honoured: {have}"
    else:
        reason = f"GPUs are turned off ({ENV}=off or gpu_mode='off')"
    raise gpu_refusal(reason, ENV, "docker")
