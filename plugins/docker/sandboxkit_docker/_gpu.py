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
from typing import Any, Literal

from sandboxkit.spi import ErrorCode, SandboxError

ENV = "SANDBOXKIT_DOCKER_GPU"
Mode = Literal["auto", "simulate", "off"]
MODES: tuple[Mode, ...] = ("auto", "simulate", "off")
NVIDIA_SMI = "/usr/bin/nvidia-smi"

#: GPU type -> (the name nvidia-smi reports, memory in MiB)
MODELS: dict[str, tuple[str, int]] = {
    "T4": ("Tesla T4", 15360),
    "L4": ("NVIDIA L4", 23034),
    "A10": ("NVIDIA A10", 23028),
    "A10G": ("NVIDIA A10G", 23028),
    "L40S": ("NVIDIA L40S", 46068),
    "A100": ("NVIDIA A100-SXM4-40GB", 40960),
    "A100-40GB": ("NVIDIA A100-SXM4-40GB", 40960),
    "A100-80GB": ("NVIDIA A100-SXM4-80GB", 81920),
    "H100": ("NVIDIA H100 80GB HBM3", 81559),
    "H200": ("NVIDIA H200", 143771),
    "B200": ("NVIDIA B200", 183359),
}


def resolve_mode(option: str | None) -> Mode:
    """The GPU mode: the provider option, else ``$SANDBOXKIT_DOCKER_GPU``, else ``auto``."""
    value = (option or os.environ.get(ENV) or "auto").strip().lower()
    if value not in MODES:
        raise SandboxError(
            ErrorCode.INVALID_ARGUMENT,
            f"{ENV}={value!r} is not a GPU mode; use one of {', '.join(MODES)}",
            provider="docker",
        )
    return value  # type: ignore[return-value]


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
        devices = ",".join(str(i) for i in range(self.count))
        env = {
            "SANDBOXKIT_GPU": self.spec,
            "NVIDIA_VISIBLE_DEVICES": devices,
            "CUDA_VISIBLE_DEVICES": devices,
            "NVIDIA_DRIVER_CAPABILITIES": "compute,utility",
        }
        if self.simulated:
            env["SANDBOXKIT_GPU_SIMULATED"] = "1"
        return env

    def files(self) -> list[tuple[str, bytes]]:
        """Executables to place in the container (the stand-in nvidia-smi when simulating)."""
        return [(NVIDIA_SMI, nvidia_smi_script(self.kind, self.count).encode())] if self.simulated else []


#: How to get GPU sandboxes on a machine without GPUs.
HINT = (
    f"to run GPU code paths without a GPU set {ENV}=simulate (a stand-in nvidia-smi), "
    "or use a provider with GPUs such as modal"
)


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
    raise SandboxError(
        ErrorCode.CAPABILITY_NOT_SUPPORTED,
        f"{reason}; to run GPU code paths without a GPU set {ENV}=simulate (or "
        "provider_options={'gpu_mode': 'simulate'}), or use a provider with GPUs such as modal",
        provider="docker",
    )


def nvidia_smi_script(kind: str, count: int) -> str:
    """A POSIX sh stand-in for nvidia-smi: ``-L``, ``--query-gpu=... --format=csv[,noheader][,nounits]``, a table."""
    bare = kind.rstrip("!+")
    name, memory = MODELS.get(bare, (f"NVIDIA {bare}", 16384))
    return _SCRIPT.replace("@NAME@", name).replace("@MEM@", str(memory)).replace("@COUNT@", str(count))


_SCRIPT = r"""#!/bin/sh
# sandboxkit stand-in for nvidia-smi: SIMULATED GPUs (SANDBOXKIT_DOCKER_GPU=simulate); no GPU is attached.
NAME='@NAME@'; MEM=@MEM@; COUNT=@COUNT@; DRIVER=550.54.15; CUDA=12.4
only=; query=; header=1; units=1
uuid() { printf 'GPU-5a1d%04x-51b0-4c0d-8e0a-%012d' "$1" "$1"; }
while [ $# -gt 0 ]; do
  case $1 in
    -L|--list-gpus) query=LIST ;;
    -i) shift; only=$1 ;;
    --id=*) only=${1#--id=} ;;
    --query-gpu=*) query=${1#--query-gpu=} ;;
    --format=*) case ${1#--format=} in *noheader*) header= ;; esac
                case ${1#--format=} in *nounits*) units= ;; esac ;;
    -h|--help) echo "nvidia-smi (sandboxkit simulation): -L, -i N, --query-gpu=F,... --format=csv[,noheader]"
               exit 0 ;;
    *) echo "nvidia-smi (sandboxkit simulation): unsupported option $1" >&2; exit 2 ;;
  esac
  shift
done
field() {  # $1 field, $2 gpu index
  case $1 in
    index) echo "$2" ;;
    name|gpu_name) echo "$NAME" ;;
    uuid|gpu_uuid) uuid "$2" ;;
    memory.total) echo "$MEM${units:+ MiB}" ;;
    memory.used) echo "0${units:+ MiB}" ;;
    memory.free) echo "$MEM${units:+ MiB}" ;;
    utilization.gpu|utilization.memory) echo "0${units:+ %}" ;;
    temperature.gpu) echo 30 ;;
    driver_version) echo "$DRIVER" ;;
    count) echo "$COUNT" ;;
    pci.bus_id) printf '00000000:%02X:00.0\n' $((2 + $2)) ;;
    *) echo "[Not Supported]" ;;
  esac
}
unit() { case $1 in memory.*) echo " [MiB]" ;; utilization.*) echo " [%]" ;; esac; }
i=0
if [ "$query" = LIST ]; then
  while [ $i -lt $COUNT ]; do
    [ -z "$only" ] || [ "$only" = $i ] && echo "GPU $i: $NAME (UUID: $(uuid $i))"
    i=$((i + 1))
  done
  exit 0
fi
if [ -n "$query" ]; then
  fields=$(echo "$query" | tr ',' ' ')
  if [ -n "$header" ]; then
    line=; for f in $fields; do line="$line${line:+, }$f${units:+$(unit $f)}"; done; echo "$line"
  fi
  while [ $i -lt $COUNT ]; do
    if [ -z "$only" ] || [ "$only" = $i ]; then
      line=; for f in $fields; do line="$line${line:+, }$(field $f $i)"; done; echo "$line"
    fi
    i=$((i + 1))
  done
  exit 0
fi
echo "+-----------------------------------------------------------------------------+"
echo "| NVIDIA-SMI $DRIVER   Driver Version: $DRIVER   CUDA Version: $CUDA  (sandboxkit simulated) |"
echo "|-----------------------------------------------------------------------------|"
while [ $i -lt $COUNT ]; do
  printf '| %3d  %-28s | %5dMiB / %5dMiB |   0%%  Default |\n' $i "$NAME" 0 $MEM
  i=$((i + 1))
done
echo "+-----------------------------------------------------------------------------+"
echo "| Processes: none                                                             |"
echo "+-----------------------------------------------------------------------------+"
"""
