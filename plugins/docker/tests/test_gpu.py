"""GPUs: simulate mode reports the requested type and count; without a GPU, a clear error and no container."""

from __future__ import annotations

import glob
from typing import Any

import pytest
from sandboxkit_docker.images import BUSYBOX_IMAGE
from sandboxkit_docker.provider import DockerProvider

from sandboxkit import Capability, ErrorCode, Sandbox, SandboxError

pytestmark = pytest.mark.usefixtures("docker_engine")
SIMULATE = {"provider_options": {"gpu_mode": "simulate"}}


def _host_has_gpu(docker_engine: Any) -> bool:
    return "nvidia" in (docker_engine.info().get("Runtimes") or {}) or bool(glob.glob("/dev/nvidia[0-9]*"))


def _session_containers(docker_engine: Any, session_label: str) -> set[str]:
    return {c.id for c in docker_engine.containers.list(all=True, filters={"label": session_label})}


def test_the_provider_class_declares_gpu() -> None:
    assert Capability.GPU in DockerProvider.capabilities


def test_simulated_t4_lists_one_t4() -> None:
    with Sandbox.create(gpu="T4", **SIMULATE) as sb:  # type: ignore[arg-type]
        listing = sb.execute("nvidia-smi -L", check=True).stdout.splitlines()
        assert len(listing) == 1 and listing[0].startswith("GPU 0: Tesla T4 (UUID: GPU-")
        env = sb.execute("echo $CUDA_VISIBLE_DEVICES/$NVIDIA_VISIBLE_DEVICES/$SANDBOXKIT_GPU/$SANDBOXKIT_GPU_SIMULATED")
        assert env.stdout.strip() == "0/0/T4/1"


def test_simulated_a100_pair_through_the_env_switch_in_a_busybox_image(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SANDBOXKIT_DOCKER_GPU", "simulate")
    with Sandbox.create(image=BUSYBOX_IMAGE, gpu="a100:2") as sb:
        listing = sb.execute("nvidia-smi -L", check=True).stdout.splitlines()
        assert [line.split(" (UUID")[0] for line in listing] == [
            "GPU 0: NVIDIA A100-SXM4-40GB",
            "GPU 1: NVIDIA A100-SXM4-40GB",
        ]
        query = sb.execute("nvidia-smi --query-gpu=index,name,memory.total --format=csv,noheader,nounits", check=True)
        assert query.stdout.splitlines() == ["0, NVIDIA A100-SXM4-40GB, 40960", "1, NVIDIA A100-SXM4-40GB, 40960"]
        assert sb.execute("echo $CUDA_VISIBLE_DEVICES").stdout.strip() == "0,1"
        assert "A100-SXM4-40GB" in sb.execute("nvidia-smi", check=True).stdout


def test_gpu_without_a_gpu_or_simulation_fails_before_any_container(
    docker_engine: Any, session_label: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    if _host_has_gpu(docker_engine):
        pytest.skip("this host has NVIDIA GPUs: auto mode passes them through")
    monkeypatch.delenv("SANDBOXKIT_DOCKER_GPU", raising=False)
    before = _session_containers(docker_engine, session_label)
    with pytest.raises(SandboxError) as err:
        Sandbox.create(gpu="H100")
    assert err.value.code == ErrorCode.CAPABILITY_NOT_SUPPORTED
    assert "SANDBOXKIT_DOCKER_GPU=simulate" in err.value.message
    assert _session_containers(docker_engine, session_label) == before


def test_gpu_mode_off_refuses_even_when_the_env_says_simulate(
    docker_engine: Any, session_label: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SANDBOXKIT_DOCKER_GPU", "simulate")
    before = _session_containers(docker_engine, session_label)
    with pytest.raises(SandboxError) as err:
        Sandbox.create(gpu="T4", provider_options={"gpu_mode": "off"})
    assert err.value.code == ErrorCode.CAPABILITY_NOT_SUPPORTED and "turned off" in err.value.message
    assert _session_containers(docker_engine, session_label) == before


def test_an_unknown_gpu_mode_is_invalid(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SANDBOXKIT_DOCKER_GPU", "maybe")
    with pytest.raises(SandboxError) as err:
        Sandbox.create(gpu="T4")
    assert err.value.code == ErrorCode.INVALID_ARGUMENT and "SANDBOXKIT_DOCKER_GPU" in err.value.message
