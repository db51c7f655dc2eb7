"""The conformance suite again, every sandbox under gVisor (``provider_options={"runtime": "runsc"}``).

The engine must offer the runtime ``runsc``: scripts/setup.sh registers it with the dockerd it
starts (CI's). These tests fail, never skip, on an engine without it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

#: What gVisor (runsc 2022, ptrace platform) does differently, each a strict xfail with its reason.
RUNSC_DIFFERENCES: dict[str, str] = {
    "TestSnapshots::test_a_new_sandbox_starts_from_the_snapshot": (
        "under runsc /tmp is an anonymous volume, which a commit leaves out; the snapshot copies it into the "
        "image, but with the disk cap (the default) the new sandbox's /tmp volume is a tmpfs, which the engine "
        "does not fill from the image, so the file written before the snapshot is not there"
    ),
    "TestPty::test_terminal_size_resize_and_ctrl_c": (
        "gVisor's terminal line discipline does not turn ^C into SIGINT: the byte reaches the shell as input "
        "(echoed as \\x03, where runc echoes ^C) and the foreground job runs on; size and resize work"
    ),
}


#: Differences that do not happen every time: a strict xfail would fail the runs where they do not.
RUNSC_FLAKY = {
    "TestCpuLimit::test_cpu_limit_caps_cpu_time": (
        "gVisor reports CPU time from its own accounting: two busy loops at cpu=0.25 read ~2 s of CPU in 3 s "
        "inside, while the host's cgroup counted ~0.34 s; the quota holds on the host, the in-sandbox measure "
        "this test uses does not show it (on a host overloaded by other work the loops get less than the "
        "quota anyway, and it passes: seen at a load average of ~900)"
    ),
    "TestMemoryLimit::test_memory_limit": (
        "under gVisor the host's OOM killer picks one of the sandbox's host processes: the stub running the "
        "allocating program (RESOURCE_LIMIT_EXCEEDED, as under runc) or the gVisor kernel itself, which ends "
        "the whole sandbox (SANDBOX_NOT_FOUND); we saw both"
    ),
}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if item.path.parent == here:
            item.add_marker(pytest.mark.docker)
            reason = RUNSC_FLAKY.get(item.nodeid.split("::", 1)[-1].partition("[")[0])
            if reason is not None:
                item.add_marker(pytest.mark.xfail(reason=reason, strict=False))


@pytest.fixture(scope="session")
def sandboxkit_provider(runsc_engine: Any) -> str:
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
