"""No exec output is lost when it reaches the client together with the engine's upgrade response.

http.client reads the response headers through a buffer and may pull the first output frames in
with them; the engine's own "unable to find user" message always comes that early. Every one of
these commands must report its output, however the reads happen to fall.
"""

from __future__ import annotations

from collections.abc import Iterator

import anyio
import pytest

from sandboxkit import AsyncSandbox, Sandbox

RUNS = 160


@pytest.fixture(scope="module")
def sandbox_id(docker_engine: object) -> Iterator[str]:
    with Sandbox.create("docker", timeout=300) as sb:
        yield sb.id


def test_every_fast_exec_keeps_its_first_output(sandbox_id: str) -> None:
    async def main() -> list[str]:
        sandbox = await AsyncSandbox.from_id(sandbox_id, "docker")
        outputs: list[str] = []
        limiter = anyio.CapacityLimiter(8)

        async def one(i: int) -> None:
            async with limiter:
                if i % 2:
                    result = await sandbox.execute(["whoami"], user="nonexistent")
                else:
                    result = await sandbox.execute(["echo", f"run-{i}"])
                outputs.append(result.output)

        async with anyio.create_task_group() as tg:
            for i in range(RUNS):
                tg.start_soon(one, i)
        return outputs

    outputs = anyio.run(main)
    missing = [o for o in outputs if not o.strip()]
    assert len(outputs) == RUNS, f"{len(missing)} of {RUNS} execs lost their output"
    assert not missing, f"{len(missing)} of {RUNS} execs lost their output"
