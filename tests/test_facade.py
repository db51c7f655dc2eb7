"""The facade's own behaviour, on the in-process ``memory`` provider: no engine, the fast lane.

Output caps, decoding, the timeout grace, error translation, honest capabilities, factories, the
pool, the registry's public API and the volumes/gc facades. The grace test patches the private
``TIMEOUT_GRACE``: tests/ may reach into the core's private units, nothing outside the core may.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import anyio
import pytest
from pydantic import BaseModel

import sandboxkit
from sandboxkit import (
    AsyncSandbox,
    Capability,
    ErrorCode,
    Pool,
    Sandbox,
    SandboxError,
    create_sandbox_factory,
    create_sandbox_factory_from_sandbox,
    volumes,
)
from sandboxkit._registry import registry
from sandboxkit.spi import ExecExit, ExecRequest, OutputCallback, SandboxSpec
from sandboxkit.testing import MemoryProvider, registered, responses

# every provider these tests register lives under a unique name, so reruns and other tests never clash
_registrations = contextlib.ExitStack()


def register(cls: type[MemoryProvider]) -> str:
    return _registrations.enter_context(registered(cls))


@pytest.fixture(autouse=True)
def _forget_registrations() -> Iterator[None]:
    yield
    _registrations.close()


@pytest.fixture
def sb() -> Iterator[Sandbox]:
    with Sandbox.create(provider="memory") as sandbox:
        yield sandbox


# ----------------------------------------------------------------- output
def test_output_past_max_output_is_truncated_and_flagged(sb: Sandbox) -> None:
    result = sb.execute("head -c 5000 /dev/zero | tr '\\000' x; echo done >&2", max_output=1000)
    assert result.truncated
    assert result.output_bytes == b"x" * 1000
    assert result.exit_code == 0
    assert not sb.execute("echo small", max_output=1000).truncated


def test_invalid_utf8_is_replaced_in_text_and_exact_in_bytes(sb: Sandbox) -> None:
    result = sb.execute("printf '\\377ok\\303\\251'")
    assert result.stdout_bytes == b"\xffok\xc3\xa9"
    assert result.stdout == "\ufffdoké"


def test_a_character_split_across_chunks_streams_whole(sb: Sandbox) -> None:
    chunks = list(sb.stream("printf '\\303'; sleep 0.3; printf '\\251\\n'"))
    assert b"".join(c.data for c in chunks) == b"\xc3\xa9\n"
    assert "".join(c.text for c in chunks) == "é\n"  # split or not (a loaded machine may merge the writes)
    assert all("\ufffd" not in c.text for c in chunks)


# ----------------------------------------------------------------- timeouts
def test_a_timeout_kills_the_command_and_keeps_the_partial_output(sb: Sandbox) -> None:
    started = time.monotonic()
    with pytest.raises(SandboxError) as info:
        sb.execute("echo before; sleep 60; echo after", timeout=1)
    assert info.value.code is ErrorCode.COMMAND_TIMEOUT
    assert isinstance(info.value, TimeoutError)
    assert info.value.result is not None
    assert info.value.result.stdout == "before\n"
    assert time.monotonic() - started < 30
    assert sb.execute("echo alive").stdout == "alive\n"


class DeafHandleProvider(MemoryProvider):
    """Runs every command without its timeout: the provider never reports the kill."""

    async def create(self, spec: SandboxSpec, options: BaseModel) -> Any:
        handle = await super().create(spec, options)
        original = handle.exec

        async def exec_without_timeout(request: ExecRequest, on_output: OutputCallback) -> ExecExit:
            deaf = ExecRequest(argv=request.argv, cwd=request.cwd, env=request.env, stdin=request.stdin, user=None)
            return await original(deaf, on_output)

        handle.exec = exec_without_timeout  # type: ignore[method-assign]
        return handle


def test_the_facade_times_out_a_provider_that_ignores_the_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sandboxkit._async_sandbox.TIMEOUT_GRACE", 0.5)
    with Sandbox.create(provider=register(DeafHandleProvider)) as deaf:
        started = time.monotonic()
        with pytest.raises(SandboxError) as info:
            deaf.execute("echo partial; sleep 30", timeout=0.5)
        assert info.value.code is ErrorCode.COMMAND_TIMEOUT
        assert "did not stop it" in info.value.message
        assert info.value.result is not None
        assert info.value.result.stdout == "partial\n"
        assert time.monotonic() - started < 20


# ----------------------------------------------------------------- error translation
class BrokenProvider(MemoryProvider):
    """Raises plain exceptions where a provider should raise SandboxErrors."""

    fail_create = False

    async def create(self, spec: SandboxSpec, options: BaseModel) -> Any:
        if self.fail_create:
            raise RuntimeError("engine exploded")
        handle = await super().create(spec, options)

        async def read_file(path: str) -> bytes:
            raise OSError("disk on fire")

        async def exec_(request: ExecRequest, on_output: OutputCallback) -> ExecExit:
            raise ValueError("wire garbled")

        async def oom_exec(request: ExecRequest, on_output: OutputCallback) -> ExecExit:
            await on_output("stdout", b"half")
            return ExecExit(exit_code=137, oom_killed=True)

        handle.read_file = read_file  # type: ignore[method-assign]
        handle.exec = oom_exec if spec.tags.get("oom") else exec_  # type: ignore[method-assign]
        return handle


class FailingCreateProvider(BrokenProvider):
    fail_create = True


def test_plain_exceptions_become_the_operations_error_code() -> None:
    with pytest.raises(SandboxError) as created:
        Sandbox.create(provider=register(FailingCreateProvider))
    assert created.value.code is ErrorCode.SANDBOX_CREATION_FAILED
    assert "failed unexpectedly: RuntimeError: engine exploded" in created.value.message
    with Sandbox.create(provider=register(BrokenProvider)) as broken:
        with pytest.raises(SandboxError) as read:
            broken.read_file("/etc/hostname")
        assert read.value.code is ErrorCode.FILE_OPERATION_FAILED
        assert read.value.sandbox_id == broken.id
        with pytest.raises(SandboxError) as ran:
            broken.execute("true")
        assert ran.value.code is ErrorCode.PROVIDER_UNAVAILABLE
        assert "ValueError: wire garbled" in ran.value.message


def test_oom_killed_is_resource_limit_exceeded_with_the_partial_output() -> None:
    with Sandbox.create(provider=register(BrokenProvider), tags={"oom": "1"}) as sandbox:
        with pytest.raises(SandboxError) as info:
            sandbox.execute("anything")
        assert info.value.code is ErrorCode.RESOURCE_LIMIT_EXCEEDED
        assert info.value.result is not None
        assert info.value.result.stdout == "half"


def test_bad_input_is_invalid_argument(sb: Sandbox) -> None:
    for call in (lambda: sb.execute(""), lambda: sb.execute("true", timeout=-1), lambda: sb.read_file("rel")):
        with pytest.raises(SandboxError) as info:
            call()
        assert info.value.code is ErrorCode.INVALID_ARGUMENT


# ----------------------------------------------------------------- capabilities
class NoStdinHereProvider(MemoryProvider):
    """Declares STDIN but cannot honour it on this 'machine'; counts how often it is asked."""

    asked: ClassVar[int] = 0

    async def current_capabilities(self) -> frozenset[Capability]:
        type(self).asked += 1
        return type(self).capabilities - {Capability.STDIN}

    def capability_hint(self, capability: Capability) -> str:
        return "install the stdin pipe (test hint)"


def test_capabilities_are_what_the_instance_honours_now_asked_once() -> None:
    name = register(NoStdinHereProvider)
    NoStdinHereProvider.asked = 0
    assert Capability.STDIN in NoStdinHereProvider.capabilities
    assert Capability.STDIN not in Sandbox(name).capabilities
    with Sandbox.create(provider=name) as sandbox:
        assert Capability.STDIN not in sandbox.capabilities
        assert Capability.STDIN not in sandbox.aio.capabilities
        with pytest.raises(SandboxError) as info:
            sandbox.execute("cat", stdin="x")
        assert info.value.code is ErrorCode.CAPABILITY_NOT_SUPPORTED
        assert "install the stdin pipe (test hint)" in info.value.message
        assert sandbox.execute("echo still works").stdout == "still works\n"
    assert NoStdinHereProvider.asked == 1
    assert sandboxkit.provider_capabilities(name) == NoStdinHereProvider.capabilities - {Capability.STDIN}


def test_an_undeclared_capability_is_refused_before_create() -> None:
    before = len(MemoryProvider._live)
    for option in ({"gpu": "T4"}, {"block_network": True}, {"cpu": 1.0}):
        with pytest.raises(SandboxError) as info:
            Sandbox.create(provider="memory", **option)  # type: ignore[arg-type]
        assert info.value.code is ErrorCode.CAPABILITY_NOT_SUPPORTED
    assert len(MemoryProvider._live) == before


# ----------------------------------------------------------------- factories and pool
def test_factories() -> None:
    factory = create_sandbox_factory(provider="memory", tags={"who": "factory"})
    first, second = factory(), factory(None)
    try:
        assert first.id != second.id
        assert first.execute("echo one").stdout == "one\n"
    finally:
        first.close()
        second.close()
    with Sandbox.create(provider="memory") as shared:
        same = create_sandbox_factory_from_sandbox(shared)
        assert same() is shared
        assert same("runtime") is shared
    with pytest.raises(SandboxError) as info:
        create_sandbox_factory(provider="memory", timeout=-1)
    assert info.value.code is ErrorCode.INVALID_ARGUMENT


def test_pool_hands_out_fresh_sandboxes_and_reaps_them() -> None:
    with Pool(size=2, provider="memory") as pool:
        first = pool.acquire()
        with pool.sandbox() as second:
            assert second.execute("echo pooled").stdout == "pooled\n"
            assert first.id != second.id
        live = {info.id for info in Sandbox.list("memory")}
        assert first.id in live
        assert second.id not in live
    assert first.id not in {info.id for info in Sandbox.list("memory")}


def test_async_sandbox_on_the_callers_loop() -> None:
    async def main() -> str:
        async with await AsyncSandbox.create("memory") as sandbox:
            await sandbox.write_file("/tmp/sbk-facade-" + sandbox.id, "async")
            text = (await sandbox.execute(f"cat /tmp/sbk-facade-{sandbox.id}")).stdout
            await sandbox.execute(f"rm /tmp/sbk-facade-{sandbox.id}")
            return text

    assert anyio.run(main) == "async"


# ----------------------------------------------------------------- canned responses
def test_canned_responses_answer_without_running_and_calls_are_recorded(sb: Sandbox) -> None:
    responses.clear()
    responses.add("pytest", stdout="3 passed\n", exit_code=0)
    responses.add("make deploy", stderr="no\n", exit_code=2)
    assert sb.execute("pytest -q").stdout == "3 passed\n"
    failed = sb.execute(["make", "deploy"])
    assert failed.exit_code == 2
    assert failed.stderr == "no\n"
    assert sb.execute("echo real").stdout == "real\n"
    assert responses.calls == ["pytest -q", "make deploy", "echo real"]
    responses.clear()
    assert responses.calls == []


# ----------------------------------------------------------------- registry, volumes, gc
class ClosingProvider(MemoryProvider):
    closed: ClassVar[int] = 0

    async def aclose(self) -> None:
        type(self).closed += 1


def test_the_provider_cache_keys_credentials_by_hash_and_reset_closes_instances() -> None:
    name = register(ClosingProvider)
    ClosingProvider.closed = 0
    secret = "s3cret-" + uuid.uuid4().hex
    with Sandbox.create(provider=name, auth={"token": secret}) as sandbox:
        assert sandbox.execute("true").exit_code == 0
    assert registry.provider(name, {"token": secret}) is registry.provider(name, {"token": secret})
    assert registry.provider(name, {"token": secret}) is not registry.provider(name, {"token": "other"})
    assert secret not in repr(registry._instances)
    sandboxkit.reset_providers()
    assert ClosingProvider.closed == 2


def test_providers_are_closed_at_interpreter_exit(tmp_path: Path) -> None:
    flag = tmp_path / "closed"
    script = f"""
import sandboxkit
from sandboxkit.testing import MemoryProvider

class Closing(MemoryProvider):
    async def aclose(self):
        open({str(flag)!r}, "w").write("yes")

sandboxkit.register_provider(Closing, name="closing")
with sandboxkit.Sandbox.create(provider="closing") as sb:
    sb.execute("true")
"""
    subprocess.run([sys.executable, "-c", script], check=True, timeout=60)
    assert flag.read_text() == "yes"


def test_registering_a_taken_name_or_a_non_provider_is_refused() -> None:
    with pytest.raises(SandboxError) as taken:
        sandboxkit.register_provider(MemoryProvider, name="memory")
    assert taken.value.code is ErrorCode.ALREADY_EXISTS
    with pytest.raises(SandboxError) as bad:
        sandboxkit.register_provider(object, name="nope")  # type: ignore[arg-type]
    assert bad.value.code is ErrorCode.INVALID_ARGUMENT
    name = register(MemoryProvider)
    assert name in [p.name for p in sandboxkit.providers()]
    sandboxkit.unregister_provider(name)
    with pytest.raises(SandboxError) as gone:
        Sandbox.create(provider=name)
    assert gone.value.code is ErrorCode.PROVIDER_NOT_FOUND


class GcProvider(MemoryProvider):
    async def gc(self, *, dry_run: bool = False, labels: Any = None) -> list[Any]:
        raise RuntimeError("gc crashed")


def test_volumes_and_gc_facades_translate_errors() -> None:
    for call in (lambda: volumes.create("v", "memory"), volumes.list, lambda: volumes.delete("v", "memory")):
        with pytest.raises(SandboxError) as info:
            call("memory") if call is volumes.list else call()  # type: ignore[operator]
        assert info.value.code is ErrorCode.CAPABILITY_NOT_SUPPORTED
        assert info.value.provider == "memory"
    with pytest.raises(SandboxError) as crashed:
        sandboxkit.gc(register(GcProvider), dry_run=True)
    assert crashed.value.code is ErrorCode.PROVIDER_UNAVAILABLE
    assert "RuntimeError: gc crashed" in crashed.value.message

    async def async_twins() -> None:
        with pytest.raises(SandboxError) as info:
            await volumes.alist("memory")
        assert info.value.code is ErrorCode.CAPABILITY_NOT_SUPPORTED
        with pytest.raises(SandboxError):
            await sandboxkit.agc("memory")

    anyio.run(async_twins)
