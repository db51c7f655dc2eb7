"""Spawned processes on Docker: how much output is retained, and what a dead sandbox says."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from sandboxkit import ErrorCode, Sandbox, SandboxError


@pytest.fixture(scope="module")
def sandbox(docker_engine: object) -> Iterator[Sandbox]:
    sb = Sandbox.create(image="sandboxkit/base:bookworm", provider_options={"pull": "never"})
    yield sb
    sb.close()


def test_at_least_the_last_mib_of_each_stream_is_retained(sandbox: Sandbox) -> None:
    process = sandbox.spawn("printf early-err >&2; head -c 4194304 /dev/zero | tr '\\0' x; echo END; printf late >&2")
    result = process.wait(timeout=120)
    assert result.exit_code == 0
    assert result.stderr == "early-errlate", "a quiet stream keeps its output however much the other one writes"
    assert result.stdout.endswith("xEND\n")
    assert (1 << 20) <= len(result.stdout_bytes) < (2 << 20), len(result.stdout_bytes)
    assert result.output.endswith("END\nlate")


def test_output_is_decoded_as_utf8(sandbox: Sandbox) -> None:
    process = sandbox.spawn("printf 'h\\303'; sleep 0.2; printf '\\251 \\342\\202\\254'; printf 12 >&2")
    result = process.wait(timeout=60)
    assert (result.stdout, result.stderr) == ("hé €", "12")
    assert sorted(result.output) == sorted("hé €12")


def test_a_closed_sandbox_reports_sandbox_not_found(docker_engine: object) -> None:
    sb = Sandbox.create(image="sandboxkit/base:bookworm", provider_options={"pull": "never"})
    process = sb.spawn("sleep 1000")
    sb.close()
    with pytest.raises(SandboxError) as caught:
        process.poll()
    assert caught.value.code == ErrorCode.SANDBOX_NOT_FOUND
    with pytest.raises(SandboxError) as spawning:
        sb.spawn("true")
    assert spawning.value.code == ErrorCode.SANDBOX_NOT_FOUND


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.mark.anyio
async def test_the_async_twins(docker_engine: object) -> None:
    from sandboxkit import AsyncSandbox

    async with await AsyncSandbox.create(image="sandboxkit/base:bookworm", provider_options={"pull": "never"}) as sb:
        process = await sb.spawn("read x; echo got-$x", env={"A": "1"})
        await process.write_stdin("it\n")
        chunks = [chunk.text async for chunk in process.stream()]
        assert "".join(chunks) == "got-it\n"
        assert await process.poll() == 0
        assert [p.id for p in await sb.processes()] == [process.id]
        again = await sb.process(process.id)
        assert (await again.wait(timeout=30)).stdout == "got-it\n"
