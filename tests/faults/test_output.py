"""Output floods, binary output, and argv at the kernel's limits, on both exec paths."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import pytest

import sandboxkit

pytestmark = pytest.mark.docker

#: Linux's limit on one argument (MAX_ARG_STRLEN), terminating NUL included.
MAX_ARG = 128 * 1024


@pytest.fixture(scope="module", params=["fast path", "docker exec"])
def sb(request: Any, docker_engine: Any) -> Iterator[sandboxkit.Sandbox]:
    with sandboxkit.Sandbox.create(provider="docker", timeout=300) as sandbox:
        for _ in range(2):
            sandbox.execute(["true"])
        fast = sandbox.handle.fast  # type: ignore[attr-defined]
        fast.disabled = None if request.param == "fast path" else "switched off by the test"
        yield sandbox


def test_flood_is_capped_without_stopping_the_command(sb: sandboxkit.Sandbox) -> None:
    r = sb.execute("head -c 200000000 /dev/zero; echo end >&2; exit 7", max_output=4 << 20)
    assert r.exit_code == 7
    assert r.truncated
    assert len(r.output_bytes) == 4 << 20
    streamed = sum(len(c.data) for c in sb.stream("head -c 50000000 /dev/urandom", max_output=1 << 20))
    assert streamed == 50_000_000  # stream() hands on everything; only the kept result is capped


def test_binary_output_is_exact(sb: sandboxkit.Sandbox) -> None:
    script = 'i=0; while [ $i -lt 256 ]; do printf "\\\\$(printf %o $i)"; i=$((i+1)); done'
    r = sb.execute(["bash", "-c", script])
    assert r.stdout_bytes == bytes(range(256))
    mixed = sb.execute("printf '\\377\\376\\000a'; printf '\\000\\377' >&2")
    assert (mixed.stdout_bytes, mixed.stderr_bytes) == (b"\xff\xfe\x00a", b"\x00\xff")
    assert mixed.stdout == "\ufffd\ufffd\x00a"  # decoded with replacement, raw bytes kept


def test_argv_near_the_kernel_limit(sb: sandboxkit.Sandbox) -> None:
    biggest = "x" * (MAX_ARG - 1)
    r = sb.execute(["sh", "-c", 'printf %s "$1" | wc -c', "sh", biggest])
    assert r.stdout.strip() == str(MAX_ARG - 1)
    many = ["y" * (64 * 1024 - 1)] * 16  # 1 MiB of argv in all
    r = sb.execute(["sh", "-c", 'echo $#; printf %s "$@" | wc -c', "sh", *many])
    assert r.stdout.split() == ["16", str(16 * (64 * 1024 - 1))]
    with contextlib.suppress(sandboxkit.SandboxError):  # too long: a clear failure, never a hang
        r = sb.execute(["echo", "x" * MAX_ARG])
        assert r.exit_code != 0
        assert "argument list too long" in r.output.lower()
