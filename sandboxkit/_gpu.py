"""GPU pieces every provider shares: the modes, the sandbox's GPU variables, the stand-in nvidia-smi.

A provider that serves ``gpu=`` passes real GPUs through where it can and, on request, simulates
them: no GPU is attached, a stand-in ``nvidia-smi`` reports the requested type and count and the
usual CUDA variables are set, so GPU code paths run offline. The mode comes from the provider's
``gpu_mode`` option, else its environment variable (``$SANDBOXKIT_DOCKER_GPU``,
``$SANDBOXKIT_BWRAP_GPU``), else ``auto`` (real GPUs, or a refusal naming the simulate switch).
"""

from __future__ import annotations

import os
from typing import Literal

from sandboxkit._errors import ErrorCode, SandboxError

GpuMode = Literal["auto", "simulate", "off"]
GPU_MODES: tuple[GpuMode, ...] = ("auto", "simulate", "off")

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


def resolve_gpu_mode(option: str | None, env_var: str, provider: str) -> GpuMode:
    """The GPU mode: the provider option, else ``$env_var``, else ``auto``; INVALID_ARGUMENT otherwise."""
    value = (option or os.environ.get(env_var) or "auto").strip().lower()
    if value not in GPU_MODES:
        raise SandboxError(
            ErrorCode.INVALID_ARGUMENT,
            f"{env_var}={value!r} is not a GPU mode; use one of {', '.join(GPU_MODES)}",
            provider=provider,
        )
    return value  # type: ignore[return-value]


def gpu_hint(env_var: str) -> str:
    """How to get GPU sandboxes from a provider instance that reports no GPU here."""
    return (
        f"to run GPU code paths without a GPU set {env_var}=simulate (a stand-in nvidia-smi), "
        "or use a provider with GPUs such as modal"
    )


def gpu_refusal(reason: str, env_var: str, provider: str) -> SandboxError:
    """CAPABILITY_NOT_SUPPORTED for a ``gpu=`` request the provider cannot honour, saying what to do."""
    return SandboxError(
        ErrorCode.CAPABILITY_NOT_SUPPORTED,
        f"{reason}; to run GPU code paths without a GPU set {env_var}=simulate (or "
        "provider_options={'gpu_mode': 'simulate'}), or use a provider with GPUs such as modal",
        provider=provider,
    )


def gpu_env(kind: str, count: int, *, simulated: bool) -> dict[str, str]:
    """The variables a GPU sandbox gets: ``SANDBOXKIT_GPU`` (``"A100:2"``) and NVIDIA's/CUDA's own."""
    devices = ",".join(str(i) for i in range(count))
    env = {
        "SANDBOXKIT_GPU": kind if count == 1 else f"{kind}:{count}",
        "NVIDIA_VISIBLE_DEVICES": devices,
        "CUDA_VISIBLE_DEVICES": devices,
        "NVIDIA_DRIVER_CAPABILITIES": "compute,utility",
    }
    if simulated:
        env["SANDBOXKIT_GPU_SIMULATED"] = "1"
    return env


def nvidia_smi_script(kind: str, count: int) -> str:
    """A POSIX sh stand-in for nvidia-smi: ``-L``, ``--query-gpu=... --format=csv[,noheader][,nounits]``, a table."""
    bare = kind.rstrip("!+")
    name, memory = MODELS.get(bare, (f"NVIDIA {bare}", 16384))
    return _SCRIPT.replace("@NAME@", name).replace("@MEM@", str(memory)).replace("@COUNT@", str(count))


_SCRIPT = r"""#!/bin/sh
# sandboxkit stand-in for nvidia-smi: SIMULATED GPUs (gpu_mode simulate); no GPU is attached.
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
