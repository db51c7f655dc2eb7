"""Many commands on one sandbox, many sandboxes at once: every result correct and matched."""

from __future__ import annotations

import os
from typing import Any

import anyio
import pytest

import sandboxkit

pytestmark = pytest.mark.docker


@pytest.mark.parametrize("fast", [True, False], ids=["fast path", "docker exec"])
def test_100_concurrent_commands_on_one_sandbox(docker_engine: Any, monkeypatch: Any, fast: bool) -> None:
    monkeypatch.setenv("SANDBOXKIT_DOCKER_FAST_EXEC", "1" if fast else "0")

    async def main() -> None:
        async with await sandboxkit.AsyncSandbox.create(provider="docker", timeout=300) as sb:
            for _ in range(2):
                await sb.execute(["true"])
            results: dict[int, Any] = {}

            async def one(i: int) -> None:
                stdin = os.urandom(i * 997)
                results[i] = (
                    stdin,
                    await sb.execute(
                        f"sleep 0.{i % 5}; head -c {i * 997} | od -An -tx1 | tr -d ' \\n'; echo; echo err{i} >&2; "
                        f"exit {i % 11}",
                        stdin=stdin,
                        env={"N": str(i)},
                    ),
                )

            async with anyio.create_task_group() as tg:
                for i in range(100):
                    tg.start_soon(one, i)
            for i, (stdin, r) in results.items():
                assert r.exit_code == i % 11
                assert r.stdout == stdin.hex() + "\n"
                assert r.stderr == f"err{i}\n"

    anyio.run(main)


def test_50_sandboxes_in_parallel(docker_engine: Any) -> None:
    async def main() -> None:
        made: dict[int, sandboxkit.AsyncSandbox] = {}

        async def create(i: int) -> None:
            made[i] = await sandboxkit.AsyncSandbox.create(provider="docker", timeout=300, env={"WHO": str(i)})

        try:
            async with anyio.create_task_group() as tg:
                for i in range(50):
                    tg.start_soon(create, i)
            assert len({sb.id for sb in made.values()}) == 50
            outputs: dict[int, str] = {}

            async def run(i: int) -> None:
                sb = made[i]
                await sb.write_file("/tmp/me", f"file{i}")
                r = await sb.execute("echo $WHO $(cat /tmp/me) $(hostname)")
                outputs[i] = r.stdout

            async with anyio.create_task_group() as tg:
                for i in made:
                    tg.start_soon(run, i)
            for i, out in outputs.items():
                assert out == f"{i} file{i} {made[i].id[:12]}\n"
        finally:
            async with anyio.create_task_group() as tg:
                for sb in made.values():
                    tg.start_soon(sb.close)

    anyio.run(main)
