"""The Docker provider adopts the conformance suite exactly as a third-party provider would."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator
from typing import Any

import pytest
from sandboxkit_conformance.testhosts import NetworkHosts, network_hosts

# No GPU here: the provider reports GPU, and the GPU tests run, in simulate mode (a stand-in
# nvidia-smi). Set before any test asks the provider instance what it can honour.
os.environ["SANDBOXKIT_DOCKER_GPU"] = "simulate"


@pytest.fixture(scope="session")
def sandboxkit_provider(docker_engine: object) -> str:
    """The provider under test (the engine must answer: these tests fail, never skip, without one)."""
    return "docker"


@pytest.fixture(scope="session")
def sandboxkit_create_options() -> dict[str, Any]:
    """Every suite sandbox runs the offline base image (bash, coreutils, procps, python3)."""
    return {"image": "sandboxkit/base:bookworm", "provider_options": {"pull": "never"}}


@pytest.fixture(scope="session")
def sandboxkit_expected_failures() -> dict[str, str]:
    """Known failures of the Docker provider; each runs as strict xfail until it is fixed."""
    return {}


@pytest.fixture(scope="session")
def sandboxkit_gpus() -> list[str]:
    """Simulated GPUs cost nothing: check one and several."""
    return ["T4", "A100:2"]


@pytest.fixture
def sandboxkit_gpu_options() -> dict[str, Any]:
    """Simulated even on a host with GPUs: the suite checks the request reaches nvidia-smi."""
    return {"provider_options": {"gpu_mode": "simulate"}}


@pytest.fixture(scope="session")
def sandboxkit_network_hosts(docker_engine: Any, session_label: str) -> Iterator[NetworkHosts]:
    """allowed.test and denied.test on an internal network of this session, handed to the egress."""
    key, _, value = session_label.partition("=")
    with network_hosts(docker_engine, {key: value}) as hosts:
        yield dataclasses.replace(
            hosts, options={"provider_options": {"pull": "never", "egress_network": hosts.network}}
        )
