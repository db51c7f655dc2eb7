"""GPUs on bwrap: simulate mode, honest capabilities, passthrough of (stand-in) NVIDIA nodes, gpu-check.sh.

The conftest sets ``SANDBOXKIT_BWRAP_GPU=simulate`` for the shared provider instance; tests of auto
mode register a fresh instance (an instance is asked what it can honour once).
"""

from __future__ import annotations

import os
import re
import stat
import subprocess
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import anyio
import pytest
from sandboxkit_bwrap import _gpu, _registry, _rootfs
from sandboxkit_bwrap.provider import BwrapProvider

from sandboxkit import Capability, ErrorCode, Sandbox, SandboxError
from sandboxkit.testing import registered

MakeSandbox = Callable[..., Sandbox]
REPO = Path(__file__).resolve().parents[3]
GPU_CHECK = REPO / "scripts" / "gpu-check.sh"
NVIDIA_MAJOR = 195
BUSYBOX = "sandboxkit/busybox:latest"


def _host_has_gpu() -> bool:
    return bool(_gpu.device_nodes(Path("/")))


def _records(label: dict[str, str]) -> list[str]:
    """Registry entries (live or not) carrying ``label``: what a refused create must not leave."""
    return [r.id for r in _registry.all_records() if label.items() <= r.labels.items()]


@pytest.fixture
def auto_mode(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A provider name whose instance is new and sees no ``$SANDBOXKIT_BWRAP_GPU`` (auto mode)."""
    monkeypatch.delenv("SANDBOXKIT_BWRAP_GPU", raising=False)
    with registered(BwrapProvider, "bwrap-auto") as name:
        yield name


@pytest.fixture
def fake_driver(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A stand-in host root with one NVIDIA GPU: char devices 195:0 and 195:255, a libcuda, nvidia-smi.

    Made with mknod as root in a temporary directory (never in the real /dev); discovery is
    pointed at it through ``_gpu.ROOT``, the only thing patched. The libcuda is a real shared
    library with libcuda's soname and one function of its own. World-traversable, as /dev and
    /usr are: bwrap reads its sources as the sandbox's unprivileged host uid.
    """
    root = Path(tempfile.mkdtemp(prefix="sandboxkit-gpu-"))
    try:
        (root / "dev").mkdir()
        os.mknod(root / "dev" / "nvidia0", 0o666 | stat.S_IFCHR, os.makedev(NVIDIA_MAJOR, 0))
        os.mknod(root / "dev" / "nvidiactl", 0o666 | stat.S_IFCHR, os.makedev(NVIDIA_MAJOR, 255))
        lib = root / "usr" / "lib" / "x86_64-linux-gnu"
        lib.mkdir(parents=True)
        source = root / "fake_libcuda.c"
        source.write_text("int sandboxkit_fake_cuda(void) { return 42; }\n")
        soname = "-Wl,-soname,libcuda.so.1"
        subprocess.run(["gcc", "-shared", "-fPIC", soname, "-o", lib / "libcuda.so.550.54.15", source], check=True)
        source.unlink()
        (lib / "libcuda.so.1").symlink_to("libcuda.so.550.54.15")
        (root / "usr" / "bin").mkdir()
        (root / "usr" / "bin" / "nvidia-smi").write_text("#!/bin/sh\necho 'GPU 0: the host driver (UUID: GPU-x)'\n")
        for path in [root, *root.rglob("*")]:
            if not path.is_symlink() and not path.is_char_device():
                path.chmod(0o755)
        monkeypatch.setattr(_gpu, "ROOT", root)
        yield root
    finally:
        subprocess.run(["rm", "-rf", "--", str(root)], check=False)


def test_the_class_declares_gpu_and_an_instance_reports_it_only_where_it_holds(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert Capability.GPU in BwrapProvider.capabilities
    for mode in ("simulate", "auto", "off"):
        monkeypatch.setenv("SANDBOXKIT_BWRAP_GPU", mode)
        current = anyio.run(BwrapProvider().current_capabilities)
        expected = mode == "simulate" or (mode == "auto" and _host_has_gpu())
        assert (Capability.GPU in current) is expected, mode
        assert current - {Capability.GPU} == BwrapProvider.capabilities - {Capability.GPU}


def test_simulated_a100_pair_without_touching_the_shared_rootfs(make: MakeSandbox) -> None:
    rootfs = _rootfs.resolve("sandboxkit/base:bookworm").path
    assert not (rootfs / "usr/bin/nvidia-smi").exists()
    sb = make(image="sandboxkit/base:bookworm", gpu="a100:2", block_network=True)
    listing = sb.execute("nvidia-smi -L", check=True).stdout.splitlines()
    assert [line.split(" (UUID")[0] for line in listing] == [
        "GPU 0: NVIDIA A100-SXM4-40GB",
        "GPU 1: NVIDIA A100-SXM4-40GB",
    ]
    query = sb.execute("nvidia-smi --query-gpu=index,name,memory.total --format=csv,noheader,nounits", check=True)
    assert query.stdout.splitlines() == ["0, NVIDIA A100-SXM4-40GB, 40960", "1, NVIDIA A100-SXM4-40GB, 40960"]
    env = sb.execute("echo $CUDA_VISIBLE_DEVICES/$NVIDIA_VISIBLE_DEVICES/$SANDBOXKIT_GPU/$SANDBOXKIT_GPU_SIMULATED")
    assert env.stdout.strip() == "0,1/0,1/A100:2/1"
    assert sb.execute("echo x > /usr/bin/nvidia-smi").exit_code != 0, "the stand-in nvidia-smi was writable"
    assert not (rootfs / "usr/bin/nvidia-smi").exists(), "the shared rootfs directory was written"


def test_simulated_t4_in_a_busybox_root(make: MakeSandbox) -> None:
    sb = make(image=BUSYBOX, gpu="T4", block_network=True)
    listing = sb.execute("nvidia-smi -L", check=True).stdout.splitlines()
    assert len(listing) == 1 and listing[0].startswith("GPU 0: Tesla T4 (UUID: GPU-")


def test_the_gpu_mode_option_simulates_on_a_host_with_gpus(auto_mode: str, fake_driver: Path) -> None:
    options = {"provider_options": {"gpu_mode": "simulate"}}
    with Sandbox.create(auto_mode, image=BUSYBOX, gpu="L4", block_network=True, **options) as sb:  # type: ignore[arg-type]
        assert sb.execute("nvidia-smi -L", check=True).stdout.startswith("GPU 0: NVIDIA L4 (UUID: GPU-")
        assert sb.execute("echo $SANDBOXKIT_GPU_SIMULATED").stdout.strip() == "1"
        assert sb.execute("ls /dev/nvidia0").exit_code != 0, "a simulated GPU passed a device node through"


def test_gpu_without_a_gpu_or_simulation_is_refused_before_anything_exists(auto_mode: str) -> None:
    if _host_has_gpu():
        pytest.skip("this host has NVIDIA GPUs: auto mode passes them through")
    label = {"bwrap-gpu-test": uuid.uuid4().hex}
    assert Capability.GPU not in Sandbox(auto_mode).capabilities
    with pytest.raises(SandboxError) as err:
        Sandbox.create(auto_mode, gpu="H100", labels=label)
    assert err.value.code == ErrorCode.CAPABILITY_NOT_SUPPORTED
    assert "SANDBOXKIT_BWRAP_GPU=simulate" in err.value.message
    assert _records(label) == []


def test_gpu_mode_off_refuses_even_when_the_env_says_simulate() -> None:
    label = {"bwrap-gpu-test": uuid.uuid4().hex}
    with pytest.raises(SandboxError) as err:
        Sandbox.create("bwrap", gpu="T4", labels=label, provider_options={"gpu_mode": "off"})
    assert err.value.code == ErrorCode.CAPABILITY_NOT_SUPPORTED
    assert "turned off" in err.value.message
    assert _records(label) == []


def test_an_unknown_gpu_mode_is_invalid(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SANDBOXKIT_BWRAP_GPU", "maybe")
    with pytest.raises(SandboxError) as err:
        Sandbox.create("bwrap", gpu="T4")
    assert err.value.code == ErrorCode.INVALID_ARGUMENT
    assert "SANDBOXKIT_BWRAP_GPU" in err.value.message


def test_passthrough_of_stand_in_nvidia_nodes(auto_mode: str, fake_driver: Path) -> None:
    """Passthrough without a GPU: no GPU exists here, so no real driver is exercised.

    What this proves, in a real bwrap sandbox: the host's (stand-in) ``dev/nvidia0`` reaches the
    sandbox's ``/dev`` as the same character device (195:0), with ``nvidiactl``; the driver's
    library and ``nvidia-smi`` appear read-only at the same paths, and ``dlopen("libcuda.so.1")``
    finds the library (its directory named to the sandbox's ldconfig); the GPU variables are set
    and nothing says simulated; a request for more GPUs than the host has nodes is refused before
    anything is created. Whether CUDA works through them is for ``scripts/gpu-check.sh`` on a GPU
    host.
    """
    with Sandbox.create(auto_mode, image="sandboxkit/base:bookworm", gpu="H100", block_network=True) as sb:
        assert Capability.GPU in sb.capabilities
        nodes = sb.execute("stat -c '%n %F %t:%T' /dev/nvidia0 /dev/nvidiactl", check=True).stdout.splitlines()
        assert nodes == ["/dev/nvidia0 character special file c3:0", "/dev/nvidiactl character special file c3:ff"]
        assert sb.execute("ls /dev/nvidia1").exit_code != 0
        lib = "/usr/lib/x86_64-linux-gnu/libcuda.so.1"
        assert sb.read_file(lib) == (fake_driver / lib.lstrip("/")).read_bytes()
        assert sb.execute(f"echo x > {lib}").exit_code != 0, "the driver's library was writable"
        mounts = sb.execute("cat /proc/self/mountinfo", check=True).stdout
        assert re.search(rf" {re.escape(lib)} ro[, ]", mounts), "the library is not a read-only mount"
        assert sb.execute("nvidia-smi", check=True).stdout.startswith("GPU 0: the host driver")
        conf = sb.execute("cat /etc/ld.so.conf.d/000-sandboxkit-gpu.conf", check=True).stdout
        assert conf.split() == ["/usr/lib/x86_64-linux-gnu"]
        assert "libcuda.so.1 " in sb.execute("/sbin/ldconfig -p", check=True).stdout, "ldconfig did not run"
        loaded = "import ctypes; print(ctypes.CDLL('libcuda.so.1').sandboxkit_fake_cuda())"
        assert sb.execute(["python3", "-c", loaded], check=True).stdout.strip() == "42", "dlopen missed the lib"
        env = sb.execute("echo $CUDA_VISIBLE_DEVICES/$SANDBOXKIT_GPU/${SANDBOXKIT_GPU_SIMULATED:-real}").stdout
        assert env.strip() == "0/H100/real"
    label = {"bwrap-gpu-test": uuid.uuid4().hex}
    with pytest.raises(SandboxError) as err:
        Sandbox.create(auto_mode, gpu="H100:2", labels=label)
    assert err.value.code == ErrorCode.CAPABILITY_NOT_SUPPORTED
    assert "the host has 1 NVIDIA device node(s)" in err.value.message
    assert _records(label) == []


def test_gpu_check_script_is_valid_bash_and_fails_clearly_without_a_gpu() -> None:
    subprocess.run(["bash", "-n", str(GPU_CHECK)], check=True)
    source = GPU_CHECK.read_text()
    compile(source.split("<<'EOF'\n", 1)[1].rsplit("\nEOF\n", 1)[0], "gpu-check.sh (python)", "exec")
    if _host_has_gpu():
        pytest.skip("this host has an NVIDIA GPU: the script would run for real")
    run = subprocess.run([str(GPU_CHECK), "A100"], capture_output=True, text=True, timeout=60)
    assert run.returncode == 2, run.stdout + run.stderr
    assert run.stderr.startswith("gpu-check: no NVIDIA GPU on this host"), run.stderr
    assert "Traceback" not in run.stderr


def test_gpu_check_script_passes_on_stand_in_passthrough_and_fails_without_nodes(
    auto_mode: str, fake_driver: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The script's Python half, run in-process on this host's bwrap provider (no real GPU: see above).

    On the stand-in driver it reports PASS (the stand-in nvidia-smi lists a GPU; the base image has
    no PyTorch, which it says) and exits 0; once discovery looks at the real host root again, which
    has no device nodes, it reports FAIL (it asks for ``gpu_mode="auto"``, never simulate) and exits 1.
    """
    code = compile(GPU_CHECK.read_text().split("<<'EOF'\n", 1)[1].rsplit("\nEOF\n", 1)[0], "gpu-check", "exec")

    def run(root: Path) -> tuple[object, list[str]]:
        with pytest.MonkeyPatch.context() as patch, pytest.raises(SystemExit) as exited:
            patch.setattr(_gpu, "ROOT", root)
            patch.setattr("sys.argv", ["gpu-check", "H100", "sandboxkit/base:bookworm", auto_mode])
            exec(code, {"__name__": "__main__"})
        return exited.value.code, capsys.readouterr().out.splitlines()

    status, lines = run(fake_driver)
    assert status == 0, lines
    assert lines == [
        f"PASS {auto_mode}: GPU 0: the host driver (UUID: GPU-x); no PyTorch in sandboxkit/base:bookworm, "
        "CUDA call not checked"
    ]
    if _host_has_gpu():
        return
    status, lines = run(Path("/"))
    assert status == 1, lines
    assert len(lines) == 1 and lines[0].startswith(f"FAIL {auto_mode}: ") and "no NVIDIA GPU" in lines[0], lines
