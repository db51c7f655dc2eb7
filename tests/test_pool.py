"""Pool / AsyncPool: warm sandboxes, handed out on demand, refilled, all reaped on exit (real containers)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import anyio
import pytest

import sandboxkit
from sandboxkit import AsyncPool, ErrorCode, Pool, SandboxError

pytestmark = pytest.mark.docker


def pool_containers(client: Any, pool_id: str, running: bool = False) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = client.api.containers(
        all=not running, filters={"label": f"sandboxkit.label.pool={pool_id}"}
    )
    return rows


def wait_for(check: Callable[[], bool], seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def test_pool_hands_out_warm_sandboxes_refills_and_reaps_everything(docker_engine: Any) -> None:
    with Pool({"timeout": 120}, size=2, provider="docker") as pool:
        wait_for(lambda: pool.ready == 2)
        warm_ids = {row["Id"] for row in pool_containers(docker_engine, pool.aio.id)}
        first = pool.acquire()
        assert first.id in warm_ids  # made ahead of time, not on demand
        assert first.execute("echo hi").stdout == "hi\n"
        assert first.handle.fast.mux is not None  # type: ignore[attr-defined]  # warmed: its exec agent is up
        wait_for(lambda: pool.ready == 2)  # refilled in the background
        second = pool.acquire()
        with pool.sandbox() as third:
            assert third.execute("echo three").stdout == "three\n"
        assert len({first.id, second.id, third.id}) == 3
        second.close()
        pool_id = pool.aio.id
    # first was never closed by its user: the pool reaped it, with the idle ones
    wait_for(lambda: not pool_containers(docker_engine, pool_id), 20)


def test_async_pool(docker_engine: Any) -> None:
    async def main() -> None:
        async with AsyncPool(size=1, timeout=120, provider="docker") as pool:
            async with pool.sandbox() as sb:
                assert (await sb.execute("echo async")).stdout == "async\n"
            assert sb._closed  # released means closed: a used sandbox is never handed out again
            many = [await pool.acquire() for _ in range(3)]  # faster than it refills: acquire waits
            assert len({s.id for s in many}) == 3
        assert not pool_containers(docker_engine, pool.id, running=True)

    anyio.run(main)


def test_dead_sandboxes_are_never_handed_out(docker_engine: Any) -> None:
    with Pool(size=2, timeout=120, provider="docker") as pool:
        wait_for(lambda: pool.ready == 2)
        for row in pool_containers(docker_engine, pool.aio.id, running=True):
            docker_engine.api.kill(row["Id"])
        sb = pool.acquire()
        assert sb.execute("echo alive").stdout == "alive\n"


def test_stale_sandboxes_are_replaced(docker_engine: Any) -> None:
    with Pool(size=1, timeout=120, provider="docker", max_idle=1.0) as pool:
        wait_for(lambda: pool.ready == 1)
        before = {row["Id"] for row in pool_containers(docker_engine, pool.aio.id, running=True)}
        wait_for(lambda: {r["Id"] for r in pool_containers(docker_engine, pool.aio.id, running=True)} - before != set())
        sb = pool.acquire()
        assert sb.id not in before


def test_creation_failure_surfaces_instead_of_hanging(docker_engine: Any) -> None:
    with Pool(size=1, image="sandboxkit/does-not-exist:nope", provider="docker") as pool:
        start = time.monotonic()
        with pytest.raises(SandboxError) as err:
            pool.acquire()
        assert err.value.code == ErrorCode.SANDBOX_CREATION_FAILED
        assert "does-not-exist" in err.value.message
        assert time.monotonic() - start < 30


@pytest.mark.parametrize(
    ("args", "kwargs"),
    [((), {"size": 0}), ((), {"name": "x"}), (({"timeout": -1},), {}), ((), {"no_such_option": 1}), ((42,), {})],
)
def test_bad_pool_options_fail_at_once(args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    with pytest.raises(SandboxError) as err:
        Pool(*args, **kwargs)
    assert err.value.code == ErrorCode.INVALID_ARGUMENT


def test_async_pool_must_be_entered() -> None:
    async def main() -> None:
        with pytest.raises(SandboxError) as err:
            await AsyncPool(size=1).acquire()
        assert err.value.code == ErrorCode.NOT_INITIALIZED

    anyio.run(main)


def test_pool_accepts_a_spec(docker_engine: Any) -> None:
    spec = sandboxkit.SandboxSpec(timeout=60, env={"FROM": "spec"})
    with Pool(spec, size=1, provider="docker") as pool, pool.sandbox() as sb:
        assert sb.execute("echo $FROM").stdout == "spec\n"
