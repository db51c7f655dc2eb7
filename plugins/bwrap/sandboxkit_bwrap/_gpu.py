"""GPUs for bwrap sandboxes: the host's NVIDIA devices and driver files passed through, a simulation, or a refusal.

The mode comes from ``provider_options={"gpu_mode": ...}``, else ``$SANDBOXKIT_BWRAP_GPU``, else
``auto``:

- ``auto``: pass real GPUs through when the host has ``/dev/nvidia<N>`` device nodes: the first
  ``count`` of them and the control nodes (``nvidiactl``, ``nvidia-uvm``, ``nvidia-uvm-tools``,
  ``nvidia-modeset``) are bound into the sandbox's ``/dev`` (``--dev-bind``), and the driver's
  user-space files (``libcuda``/``libnvidia-*`` from ``ldconfig -p`` and the usual library
  directories, ``nvidia-smi``, ``nvidia-debugdump``) read-only at the same paths; ``ldconfig``
  then runs inside so that ``dlopen("libcuda.so.1")`` finds them. Otherwise refuse before
  anything is created.
- ``simulate``: no GPU is attached; a stand-in ``nvidia-smi`` (written into the sandbox's state
  directory, bound read-only at ``/usr/bin/nvidia-smi``) reports the requested type and count.
- ``off``: refuse every ``gpu=``.

The provider class declares Capability.GPU; an instance reports it as current only when
``$SANDBOXKIT_BWRAP_GPU`` is ``simulate``, or in ``auto`` when the host has NVIDIA device nodes.
Discovery looks under :data:`ROOT` (the host's ``/``); tests point it at a directory of their own.
"""

from __future__ import annotations

import glob
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from sandboxkit.spi import (
    GpuMode,
    SandboxError,
    SandboxSpec,
    gpu_env,
    gpu_hint,
    gpu_refusal,
    nvidia_smi_script,
    resolve_gpu_mode,
)
from sandboxkit_bwrap._host import PROVIDER

ENV = "SANDBOXKIT_BWRAP_GPU"
HINT = gpu_hint(ENV)
NVIDIA_SMI = "/usr/bin/nvidia-smi"
#: Where discovery looks for ``dev/nvidia*`` and the driver's files: the host's root (tests only change it).
ROOT = Path("/")
CONTROL_NODES = ("nvidiactl", "nvidia-uvm", "nvidia-uvm-tools", "nvidia-modeset")
#: Library directories searched besides those ``ldconfig -p`` names (relative to :data:`ROOT`).
LIB_DIRS = (
    "usr/lib/x86_64-linux-gnu",
    "usr/lib/aarch64-linux-gnu",
    "usr/lib64",
    "usr/lib",
    "usr/local/nvidia/lib64",
)
BINARIES = ("nvidia-smi", "nvidia-debugdump")
BIN_DIRS = ("usr/bin", "usr/local/bin", "usr/local/nvidia/bin")
_LIB = re.compile(r"^lib(cuda|nvidia-[\w.-]+)\.so(\.[\d.]+)?$")
#: A sandbox's ld.so configuration naming the bound library directories (in its writable layer).
LD_CONF = "etc/ld.so.conf.d/000-sandboxkit-gpu.conf"


def resolve_mode(option: str | None) -> GpuMode:
    """The GPU mode: the provider option, else ``$SANDBOXKIT_BWRAP_GPU``, else ``auto``."""
    return resolve_gpu_mode(option, ENV, PROVIDER)


def device_nodes(root: Path | None = None) -> list[Path]:
    """The host's ``dev/nvidia<N>`` nodes under ``root``, in GPU order."""
    found = glob.glob(str((root or ROOT) / "dev" / "nvidia[0-9]*"))
    return sorted((Path(p) for p in found if re.fullmatch(r"nvidia\d+", Path(p).name)), key=_index)


def offered() -> bool:
    """True when this host lets an instance report GPU: simulate mode, or ``auto`` with device nodes.

    A misspelled mode counts as offered, so that create reports the setting to fix.
    """
    try:
        mode = resolve_mode(None)
    except SandboxError:
        return True
    return mode == "simulate" or (mode == "auto" and bool(device_nodes()))


@dataclass(frozen=True)
class GpuPlan:
    """How one sandbox gets its GPUs: bwrap arguments, env, and library directories for ldconfig."""

    kind: str
    count: int
    simulated: bool
    #: (host path, path in the sandbox) of each device node, bound with --dev-bind
    devices: tuple[tuple[Path, str], ...] = ()
    #: (host path, path in the sandbox) of each driver file, bound read-only
    files: tuple[tuple[Path, str], ...] = ()
    #: the sandbox's paths of the directories holding bound libraries (for its ldconfig)
    lib_dirs: tuple[str, ...] = ()

    def env(self) -> dict[str, str]:
        return gpu_env(self.kind, self.count, simulated=self.simulated)

    def bwrap_args(self, state_dir: Path) -> list[str]:
        """The bwrap arguments (after ``--dev``); simulate writes the stand-in into ``state_dir`` first."""
        args: list[str] = []
        for src, dest in self.devices:
            args += ["--dev-bind", str(src), dest]
        files = list(self.files)
        if self.simulated:
            script = state_dir / "nvidia-smi"
            script.write_text(nvidia_smi_script(self.kind, self.count))
            script.chmod(0o755)
            files.append((script, NVIDIA_SMI))
        for src, dest in files:
            args += ["--ro-bind", str(src), dest]
        return args

    def prepare_root(self, upper: Path, owner: int) -> None:
        """Name the bound library directories to the sandbox's ldconfig (``/etc/ld.so.conf.d``)."""
        if not self.lib_dirs:
            return
        conf = upper / LD_CONF
        conf.parent.mkdir(parents=True, exist_ok=True)
        conf.write_text("".join(d + "\n" for d in self.lib_dirs))
        # root inside owns them, as in the image (etc/ too: an upper directory sets the merged one's owner)
        for path, mode in ((conf.parent.parent, 0o755), (conf.parent, 0o755), (conf, 0o644)):
            os.chown(path, owner, owner)
            path.chmod(mode)


def for_spec(spec: SandboxSpec, option: str | None) -> GpuPlan | None:
    """The plan for a sandbox's ``gpu=`` (None without one); the mode from ``option``, else the env."""
    return None if spec.gpu is None else plan(spec.gpu_type or "", spec.gpu_count, resolve_mode(option))


def plan(kind: str, count: int, mode: GpuMode) -> GpuPlan:
    """Decide how to give a sandbox ``count`` GPUs of ``kind``, or refuse before anything is created."""
    request = kind if count == 1 else f"{kind}:{count}"
    if mode == "simulate":
        return GpuPlan(kind, count, simulated=True)
    if mode == "off":
        raise gpu_refusal(f"GPUs are turned off ({ENV}=off or gpu_mode='off')", ENV, PROVIDER)
    nodes = device_nodes()
    if len(nodes) < count:
        have = f"the host has {len(nodes)} NVIDIA device node(s)" if nodes else "the host has no NVIDIA GPU"
        raise gpu_refusal(f"gpu={request!r} cannot be honoured: {have}", ENV, PROVIDER)
    dev = ROOT / "dev"
    control = [dev / n for n in CONTROL_NODES if (dev / n).exists()]
    files = driver_files()
    return GpuPlan(
        kind,
        count,
        simulated=False,
        devices=tuple((p, "/dev/" + p.name) for p in [*nodes[:count], *control]),
        files=tuple((p, _inside(p)) for p in files),
        lib_dirs=tuple(sorted({_inside(p.parent) for p in files if p.name.startswith("lib")})),
    )


def driver_files(root: Path | None = None) -> list[Path]:
    """The driver's user-space files under ``root``: ``libcuda``/``libnvidia-*`` and its tools."""
    root = root or ROOT
    found: list[Path] = []

    def add(path: Path) -> None:
        if path.is_file() and path not in found:  # a symlink is bound as the file it names
            found.append(path)

    seen_dirs: set[Path] = set()
    for d in [*(root / d for d in LIB_DIRS), *_ldconfig_dirs(root)]:
        real = d.resolve()
        if real in seen_dirs or not d.is_dir():
            continue
        seen_dirs.add(real)
        for entry in sorted(d.iterdir()):
            if _LIB.match(entry.name):
                add(entry)
    for name in BINARIES:
        for bin_dir in BIN_DIRS:
            add(root / bin_dir / name)
    return sorted(found)


def _ldconfig_dirs(root: Path) -> list[Path]:
    """Directories of NVIDIA libraries in ``root``'s ld.so cache (``ldconfig -r ROOT -p``)."""
    ldconfig = shutil.which("ldconfig") or "/sbin/ldconfig"
    if not (root / "etc" / "ld.so.cache").exists() or not os.path.exists(ldconfig):
        return []
    try:
        out = subprocess.run(
            [ldconfig, "-r", str(root), "-p"], capture_output=True, text=True, timeout=30, check=False
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    dirs = []
    for line in out.splitlines():
        name, _, path = line.strip().partition(" => ")
        if path and _LIB.match(name.split()[0]):
            dirs.append(root / Path(path).parent.relative_to("/"))
    return dirs


def _inside(path: Path) -> str:
    """The path in the sandbox of a host path under :data:`ROOT`: the same path."""
    return "/" + str(path.relative_to(ROOT))


def _index(path: Path) -> int:
    return int(path.name.removeprefix("nvidia"))
