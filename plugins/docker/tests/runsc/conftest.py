"""The conformance suite again, every sandbox under gVisor (``provider_options={"runtime": "runsc"}``).

The engine must offer the runtime ``runsc``: scripts/setup.sh registers it with the dockerd it
starts (CI's). These tests fail, never skip, on an engine without it.
"""

from __future__ import annotations

from typing import Any

import pytest

#: What gVisor (runsc 2022, ptrace platform) does differently, each a strict xfail with its reason.
RUNSC_DIFFERENCES: dict[str, str] = {}


@pytest.fixture(scope="session")
def sandboxkit_provider(docker_engine: Any) -> str:
    runtimes = docker_engine.info().get("Runtimes") or {}
    if "runsc" not in runtimes:
        pytest.fail(
            f"the Docker engine has no runtime 'runsc' (it has: {', '.join(sorted(runtimes))}); scripts/setup.sh "
            "registers it with the dockerd it starts; on an engine you run yourself: "
            "`runsc install -- --platform=ptrace --network=host` and restart dockerd",
            pytrace=False,
        )
    return "docker"


@pytest.fixture(scope="session")
def sandboxkit_create_options() -> dict[str, Any]:
    return {"image": "sandboxkit/base:bookworm", "provider_options": {"pull": "never", "runtime": "runsc"}}


@pytest.fixture(scope="session")
def sandboxkit_expected_failures() -> dict[str, str]:
    return RUNSC_DIFFERENCES


@pytest.fixture
def sandboxkit_gpu_options() -> dict[str, Any]:
    return {"provider_options": {"gpu_mode": "simulate", "runtime": "runsc"}}
