"""GPUs: simulate mode reports the requested type and count; without a GPU, a clear error and no container.

The tests' conftest sets ``SANDBOXKIT_DOCKER_GPU=simulate`` for the shared provider instance; the
tests of auto mode register a fresh instance (a provider instance asks its engine once).
"""

from __future__ import annotations

import glob
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from sandboxkit_docker.images import BUSYBOX_IMAGE
from sandboxkit_docker.provider import DockerProvider

from sandboxkit import Capability, ErrorCode, Sandbox, SandboxError
from sandboxkit.testing import registered

pytestmark = pytest.mark.usefixtures("docker_engine")
SIMULATE = {"provider_options": {"gpu_mode": "simulate"}}


def _host_has_gpu(docker_engine: Any) -> bool:
    return "nvidia" in (docker_engine.info().get("Runtimes") or {}) or bool(glob.glob("/dev/nvidia[0-9]*"))


def _session_containers(docker_engine: Any, session_label: str) -> set[str]:
    return {c.id for c in docker_engine.containers.list(all=True, filters={"label": session_label})}


@pytest.fixture
def auto_mode(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A provider name whose instance is new and sees no ``$SANDBOXKIT_DOCKER_GPU`` (auto mode)."""
    monkeypatch.delenv("SANDBOXKIT_DOCKER_GPU", raising=False)
    with registered(DockerProvider, "docker-auto") as name:
        yield name


def test_the_provider_class_declares_gpu() -> None:
    assert Capability.GPU in DockerProvider.capabilities


@pytest.mark.parametrize("mode", ["simulate", "auto", "off"])
def test_an_instance_reports_gpu_only_where_it_can_honour_it(
    mode: str, docker_engine: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SANDBOXKIT_DOCKER_GPU", mode)
    current = anyio.run(DockerProvider().current_capabilities)
    expected = mode == "simulate" or (mode == "auto" and _host_has_gpu(docker_engine))
    assert (Capability.GPU in current) is expected
    assert current - {Capability.GPU} == DockerProvider.capabilities - {Capability.GPU}


def test_providers_json_and_sandbox_capabilities_say_what_this_machine_honours(
    docker_engine: Any, auto_mode: str
) -> None:
    if _host_has_gpu(docker_engine):
        pytest.skip("this host has NVIDIA GPUs: auto mode passes them through")
    assert Capability.GPU not in Sandbox(auto_mode).capabilities
    cli = str(Path(sys.executable).with_name("sandboxkit"))
    env = {k: v for k, v in os.environ.items() if k != "SANDBOXKIT_DOCKER_GPU"}
    rows = {r["name"]: r for r in json.loads(subprocess.check_output([cli, "providers", "--json"], env=env))}
    assert "gpu" not in rows["docker"]["capabilities"]
    assert "reconnect" in rows["docker"]["capabilities"]
    env["SANDBOXKIT_DOCKER_GPU"] = "simulate"
    rows = {r["name"]: r for r in json.loads(subprocess.check_output([cli, "providers", "--json"], env=env))}
    assert "gpu" in rows["docker"]["capabilities"]


def test_the_conformance_suite_is_green_without_a_gpu(docker_engine: Any, tmp_path: Path) -> None:
    """What a user runs first: the GPU test is skipped, not failed, on a machine without GPUs."""
    if _host_has_gpu(docker_engine):
        pytest.skip("this host has NVIDIA GPUs: auto mode passes them through")
    cli = str(Path(sys.executable).with_name("sandboxkit"))
    env = {k: v for k, v in os.environ.items() if k != "SANDBOXKIT_DOCKER_GPU"}
    report = tmp_path / "report.json"
    args = [cli, "conformance", "--provider", "docker", "--report", str(report), "--", "-k", "TestGpu"]
    run = subprocess.run(args, env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    matrix = json.loads(report.read_text())["providers"]["docker"]["matrix"]
    assert matrix["gpu"]["declared"] is False
    assert matrix["gpu"]["status"] == "skipped"


def test_simulated_t4_lists_one_t4() -> None:
    with Sandbox.create(gpu="T4", **SIMULATE) as sb:  # type: ignore[arg-type]
        listing = sb.execute("nvidia-smi -L", check=True).stdout.splitlines()
        assert len(listing) == 1
        assert listing[0].startswith("GPU 0: Tesla T4 (UUID: GPU-")
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
    docker_engine: Any, session_label: str, auto_mode: str
) -> None:
    if _host_has_gpu(docker_engine):
        pytest.skip("this host has NVIDIA GPUs: auto mode passes them through")
    before = _session_containers(docker_engine, session_label)
    with pytest.raises(SandboxError) as err:
        Sandbox.create(auto_mode, gpu="H100")
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
    assert err.value.code == ErrorCode.CAPABILITY_NOT_SUPPORTED
    assert "turned off" in err.value.message
    assert _session_containers(docker_engine, session_label) == before


def test_an_unknown_gpu_mode_is_invalid(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SANDBOXKIT_DOCKER_GPU", "maybe")
    with pytest.raises(SandboxError) as err:
        Sandbox.create(gpu="T4")
    assert err.value.code == ErrorCode.INVALID_ARGUMENT
    assert "SANDBOXKIT_DOCKER_GPU" in err.value.message
