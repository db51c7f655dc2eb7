"""SandboxkitBackend beyond the standard suite: deepagents 0.7 defaults, transport, timeouts, factories."""

from __future__ import annotations

import asyncio
import base64
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from langchain_core.runnables import RunnableLambda

from sandboxkit import AsyncSandbox, Sandbox, SandboxError, create_sandbox_factory
from sandboxkit.integrations.deepagents import SandboxkitBackend


@pytest.fixture(scope="module")
def sandbox(docker_engine: object) -> Iterator[Sandbox]:
    with Sandbox.create("docker", timeout=600) as sb:
        yield sb


@pytest.fixture
def backend(sandbox: Sandbox) -> SandboxkitBackend:
    return SandboxkitBackend(sandbox)


@pytest.fixture
def commands(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every command line the backend hands to the sandbox (the calls still run for real)."""
    seen: list[str] = []
    real = AsyncSandbox.execute

    async def recording(self: AsyncSandbox, command: Any, **kwargs: Any) -> Any:
        seen.append(command if isinstance(command, str) else "\x00".join(command))
        return await real(self, command, **kwargs)

    monkeypatch.setattr(AsyncSandbox, "execute", recording)
    return seen


def _root() -> str:
    return f"/tmp/da-{uuid.uuid4().hex[:8]}"


def test_write_replaces_an_existing_file_by_default(backend: SandboxkitBackend) -> None:
    path = f"{_root()}/a/b/notes.txt"
    assert backend.write(path, "first").error is None
    assert backend.write(path, "second").path == path
    assert backend.download_files([path])[0].content == b"second"


def test_write_refuses_an_existing_file_when_asked(sandbox: Sandbox) -> None:
    backend = SandboxkitBackend(sandbox, overwrite=False)
    path = f"{_root()}/once.txt"
    assert backend.write(path, "first").error is None
    result = backend.write(path, "second")
    assert result.error is not None
    assert "already exists" in result.error
    assert backend.download_files([path])[0].content == b"first"


def test_glob_returns_absolute_file_paths_by_default(backend: SandboxkitBackend) -> None:
    root = _root()
    backend.upload_files([(f"{root}/x.py", b""), (f"{root}/sub/y.py", b""), (f"{root}/z.txt", b"")])
    backend.execute(f"mkdir -p {root}/pkg.py")
    result = backend.glob("**/*.py", path=root)
    assert result.error is None
    assert sorted(m["path"] for m in result.matches or []) == [f"{root}/sub/y.py", f"{root}/x.py"]


def test_glob_relative_lists_directories_and_paths_under_the_root(sandbox: Sandbox) -> None:
    backend = SandboxkitBackend(sandbox, glob_paths="relative")
    root = _root()
    backend.upload_files([(f"{root}/x.py", b""), (f"{root}/sub/y.py", b"")])
    result = backend.glob("*", path=root)
    assert result.error is None
    assert sorted((m["path"], m.get("is_dir")) for m in result.matches or []) == [("sub", True), ("x.py", False)]
    missing = backend.glob("*", path=f"{root}/nope")
    assert missing.error is not None
    assert "path_not_found" in missing.error


def test_file_content_never_travels_on_a_command_line(backend: SandboxkitBackend, commands: list[str]) -> None:
    marker = f"payload-{uuid.uuid4().hex}"
    encoded = base64.b64encode(marker.encode()).decode()[:24]
    path = f"{_root()}/doc.txt"
    assert backend.write(path, f"head {marker} tail").error is None
    edited = backend.edit(path, marker, f"new-{marker}")
    assert edited.error is None
    assert edited.occurrences == 1
    assert backend.download_files([path])[0].content == f"head new-{marker} tail".encode()
    assert commands, "edit runs its replace script in the sandbox"
    assert not [c for c in commands if marker in c or encoded in c]


def test_large_write_and_edit_round_trip(backend: SandboxkitBackend) -> None:
    # 5 MiB exceeds both the kernel's 128 KiB argument limit and containerd's 4 MiB message cap
    body = "".join(f"line {i:07d}\n" for i in range(400_000))
    old = body[1_000_000:1_300_000]  # 300 KB, a single argument this long would fail with E2BIG
    path = f"{_root()}/big.txt"
    assert backend.write(path, body).error is None
    assert backend.edit(path, old, old.upper()).occurrences == 1
    (got,) = backend.download_files([path])
    assert got.content == body.replace(old, old.upper()).encode()


def test_execute_reports_output_exit_code_and_truncation(sandbox: Sandbox) -> None:
    backend = SandboxkitBackend(sandbox, max_output=1000)
    result = backend.execute("echo out; echo err >&2; exit 3")
    # stdout and stderr are separate pipes: both arrive, in whichever order the kernel delivered them
    assert (sorted(result.output.splitlines()), result.exit_code, result.truncated) == (["err", "out"], 3, False)
    big = backend.execute("head -c 5000 /dev/zero | tr '\\0' x")
    assert big.truncated
    assert big.output == "x" * 1000
    assert big.exit_code == 0


def test_timeout_kills_the_command_tree_and_reports_exit_124(backend: SandboxkitBackend) -> None:
    tag = uuid.uuid4().hex[:10]
    result = backend.execute(f"echo started; sleep 40 & sleep 41; : {tag}", timeout=1)
    assert result.exit_code == 124
    assert result.output.startswith("started\n")
    assert "timed out after 1 seconds" in result.output
    assert backend.execute("ps -eo args | grep -c '[s]leep 4[01]'").output.strip() == "0"


async def test_async_twins_and_cancellation(backend: SandboxkitBackend) -> None:
    path = f"{_root()}/async.txt"
    assert (await backend.awrite(path, "async body")).error is None
    assert (await backend.adownload_files([path]))[0].content == b"async body"
    assert (await backend.aexecute(f"cat {path}")).output == "async body"
    assert (await backend.aexecute("sleep 5", timeout=1)).exit_code == 124
    # cancelling the awaiting task stops the command inside the sandbox
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(backend.aexecute("sleep 33; true"), timeout=1)
    deadline = time.monotonic() + 30  # killed on cancellation; a loaded machine may report it late
    while (await backend.aexecute("ps -eo args | grep -c '[s]leep 33'")).output.strip() != "0":
        assert time.monotonic() < deadline, "the cancelled command still runs"
        await asyncio.sleep(0.2)


def test_factory_gives_each_thread_its_own_sandbox_and_close_reaps_them(docker_engine: object) -> None:
    backend = SandboxkitBackend(create_sandbox_factory(provider="docker", timeout=300))

    def current_id(_: object) -> str:
        return backend.id

    def sandbox_id(thread: str) -> str:
        return RunnableLambda(current_id).invoke(None, config={"configurable": {"thread_id": thread}})

    with backend:
        first, second = sandbox_id("a"), sandbox_id("b")
        assert first != second
        assert sandbox_id("a") == first
        created = [backend.sandbox]  # outside a thread: one more shared sandbox
        assert backend.id not in (first, second)
    for sandbox_id_ in (first, second, created[0].id):
        with pytest.raises(SandboxError) as info:
            Sandbox.from_id(sandbox_id_, provider="docker")
        assert info.value.code == "SANDBOX_NOT_FOUND"


def test_bad_arguments_fail_at_construction(sandbox: Sandbox) -> None:
    with pytest.raises(TypeError, match=r"sandboxkit\.Sandbox"):
        SandboxkitBackend("docker")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="glob_paths"):
        SandboxkitBackend(sandbox, glob_paths="both")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="timeout"):
        SandboxkitBackend(sandbox, timeout=0)
