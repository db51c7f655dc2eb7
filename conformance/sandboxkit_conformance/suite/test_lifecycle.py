"""Lifecycle: create, two-step initialize, close, context managers, reconnect, names, list, tags, lifetimes."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import anyio
import pytest

from sandboxkit import (
    AsyncSandbox,
    Capability,
    ErrorCode,
    Sandbox,
    SandboxInfo,
    SandboxState,
    create_sandbox_factory,
    create_sandbox_factory_from_sandbox,
)
from sandboxkit_conformance._target import ConformanceTarget, SandboxPool, requires
from sandboxkit_conformance.suite._support import (
    SETTLE,
    assert_nothing_left,
    expect_error,
    live_ids,
    probe_labels,
    unique,
    wait_for,
)

__all__ = ["TestLifecycle", "TestLifetime", "TestListAndTags", "TestNames", "TestReconnect"]


def _every_call_raises_not_found(sandbox: Sandbox, why: str) -> None:
    calls: list[tuple[str, Callable[[], Any]]] = [
        ("execute", lambda: sandbox.execute("true")),
        ("read_file", lambda: sandbox.read_file("/etc/hostname")),
        ("write_file", lambda: sandbox.write_file("/tmp/sbkc-after", "x")),
        ("upload_files", lambda: sandbox.upload_files([("/tmp/sbkc-a", b"1"), ("/tmp/sbkc-b", b"2")])),
        ("download_files", lambda: sandbox.download_files(["/etc/hostname", "/etc/passwd"])),
    ]
    for name, call in calls:
        with expect_error(ErrorCode.SANDBOX_NOT_FOUND, f"{name}() on a sandbox that {why}"):
            call()


class TestLifecycle:
    """Every provider: create, use, close, in all the forms users write."""

    def test_create_gives_a_working_sandbox(self, sandboxes: SandboxPool, conformance: ConformanceTarget) -> None:
        sandbox = sandboxes.create()
        assert isinstance(sandbox.id, str) and sandbox.id, "a sandbox needs a non-empty string id"
        assert sandbox.provider == conformance.provider
        result = sandbox.execute("echo hello")
        assert (result.exit_code, result.stdout) == (0, "hello\n")

    def test_close_is_idempotent_and_later_calls_raise_not_found(self, sandboxes: SandboxPool) -> None:
        sandbox = sandboxes.create()
        sandbox_id = sandbox.id
        sandbox.close()
        sandbox.close()  # a second close is not an error
        assert sandbox.id == sandbox_id, "the id stays readable after close()"
        _every_call_raises_not_found(sandbox, "was closed")
        with expect_error(ErrorCode.SANDBOX_NOT_FOUND, "stream() on a closed sandbox"):
            list(sandbox.stream("echo x"))

    def test_close_ends_the_sandbox_at_the_provider(self, conformance: ConformanceTarget) -> None:
        if not (conformance.declares(Capability.LIST) or conformance.declares(Capability.RECONNECT)):
            pytest.skip(
                "seeing a sandbox from outside needs capability 'list' or 'reconnect'; this provider has neither"
            )
        labels = probe_labels()
        sandbox = conformance.create(labels=labels)
        sandbox_id = sandbox.id
        if conformance.declares(Capability.LIST):
            assert live_ids(conformance, labels) == [sandbox_id], "a live sandbox must be listed by its labels"
        conformance.close(sandbox)
        assert_nothing_left(conformance, labels, f"close() returned for sandbox {sandbox_id}")
        if conformance.declares(Capability.RECONNECT):
            with expect_error(ErrorCode.SANDBOX_NOT_FOUND, "from_id() of a closed sandbox"):
                Sandbox.from_id(sandbox_id, conformance.provider)

    def test_context_manager_closes_even_on_error(self, conformance: ConformanceTarget) -> None:
        with Sandbox.create(conformance.provider, **conformance.options()) as sandbox:
            conformance.track(sandbox)
            assert sandbox.execute("echo in").stdout == "in\n"
        conformance.close(sandbox)  # bookkeeping only: the `with` block closed it
        _every_call_raises_not_found(sandbox, "left its `with` block")
        failing = Sandbox(conformance.provider, **conformance.options())
        with pytest.raises(KeyError, match="sbkc-boom"), failing:
            conformance.track(failing)
            raise KeyError("sbkc-boom")
        with expect_error(ErrorCode.SANDBOX_NOT_FOUND, "execute() after an exception left the `with` block"):
            failing.execute("true")
        conformance.close(failing)

    def test_two_step_initialize(self, conformance: ConformanceTarget) -> None:
        sandbox = Sandbox(conformance.provider, **conformance.options())
        with expect_error(ErrorCode.NOT_INITIALIZED, "execute() before initialize()"):
            sandbox.execute("true")
        with expect_error(ErrorCode.NOT_INITIALIZED, "read_file() before initialize()"):
            sandbox.read_file("/etc/hostname")
        assert sandbox.initialize() is sandbox, "initialize() returns the sandbox itself"
        conformance.track(sandbox)
        assert sandbox.execute("echo ready").stdout == "ready\n"
        with expect_error(ErrorCode.ALREADY_INITIALIZED, "a second initialize()"):
            sandbox.initialize()
        conformance.close(sandbox)
        with expect_error(ErrorCode.ALREADY_INITIALIZED, "initialize() after close()"):
            sandbox.initialize()
        with Sandbox(conformance.provider, **conformance.options()) as entered:  # `with` initializes
            conformance.track(entered)
            assert entered.execute("echo entered").stdout == "entered\n"
        conformance.close(entered)

    def test_async_sandbox_on_the_callers_event_loop(self, conformance: ConformanceTarget) -> None:
        async def scenario() -> AsyncSandbox:
            async with await AsyncSandbox.create(conformance.provider, **conformance.options()) as sandbox:
                result = await sandbox.execute(["sh", "-c", "echo out; echo err >&2; exit 3"])
                assert (result.exit_code, result.stdout, result.stderr) == (3, "out\n", "err\n")
                await sandbox.write_file("/tmp/sbkc-async.txt", "async ✓")
                assert await sandbox.read_file("/tmp/sbkc-async.txt") == "async ✓".encode()
                if conformance.declares(Capability.STREAMING):
                    stream = sandbox.stream("echo one; echo two")
                    text = "".join([chunk.text async for chunk in stream])
                    assert text == "one\ntwo\n"
                    assert stream.result is not None and stream.result.exit_code == 0
            with expect_error(ErrorCode.SANDBOX_NOT_FOUND, "AsyncSandbox.execute() after `async with`"):
                await sandbox.execute("true")
            return sandbox

        anyio.run(scenario)

    def test_factories(self, conformance: ConformanceTarget) -> None:
        factory = create_sandbox_factory(conformance.provider, **conformance.options())
        first = conformance.track(factory())
        second = conformance.track(factory(runtime=None))
        assert first.id != second.id, "create_sandbox_factory() makes a new sandbox per call"
        assert second.execute("echo two").stdout == "two\n"
        reuse = create_sandbox_factory_from_sandbox(first)
        assert reuse() is first and reuse(runtime=object()) is first
        conformance.close(first)
        conformance.close(second)


@requires(Capability.RECONNECT)
class TestReconnect:
    """``Sandbox.from_id``: another client reaches the same sandbox; a gone sandbox is SANDBOX_NOT_FOUND."""

    def test_from_id_reaches_the_same_sandbox(self, sandboxes: SandboxPool, conformance: ConformanceTarget) -> None:
        token = unique("token")
        sandbox = sandboxes.create()
        sandbox.write_file("/tmp/sbkc-marker", token)
        other = Sandbox.from_id(sandbox.id, conformance.provider)
        assert other.id == sandbox.id
        assert other.read_file("/tmp/sbkc-marker") == token.encode()
        assert other.execute("cat /tmp/sbkc-marker").stdout == token

    def test_a_sandbox_closed_elsewhere_raises_not_found(
        self, sandboxes: SandboxPool, conformance: ConformanceTarget
    ) -> None:
        sandbox = sandboxes.create()
        Sandbox.from_id(sandbox.id, conformance.provider).close()
        _every_call_raises_not_found(sandbox, "another client closed")

    def test_unknown_id_raises_not_found(self, conformance: ConformanceTarget) -> None:
        with expect_error(ErrorCode.SANDBOX_NOT_FOUND, "from_id() of an id that never existed") as caught:
            Sandbox.from_id(unique("sbkc-no-such-sandbox"), conformance.provider)
        assert isinstance(caught.error, LookupError), "SANDBOX_NOT_FOUND is also a LookupError"


@requires(Capability.NAMED)
class TestNames:
    """Names are unique per app while a sandbox lives; ``from_name`` finds them."""

    def test_names_are_unique_per_app_and_found_by_name(
        self, sandboxes: SandboxPool, conformance: ConformanceTarget
    ) -> None:
        app, name = unique("app"), unique("name")
        sandbox = sandboxes.create(app=app, name=name)
        assert (sandbox.name, sandbox.app) == (name, app)
        found = Sandbox.from_name(app, name, conformance.provider)
        assert found.id == sandbox.id
        with expect_error(ErrorCode.ALREADY_EXISTS, "a second live sandbox with the same app and name"):
            sandboxes.create(app=app, name=name)
        with expect_error(ErrorCode.SANDBOX_NOT_FOUND, "from_name() of a name nobody uses"):
            Sandbox.from_name(app, unique("other"), conformance.provider)
        elsewhere = sandboxes.create(app=unique("app"), name=name)
        assert elsewhere.id != sandbox.id, "the same name in another app is a different sandbox"
        conformance.close(sandbox)
        again = sandboxes.create(app=app, name=name)
        assert again.id != sandbox.id and again.execute("echo again").stdout == "again\n"


@requires(Capability.LIST)
class TestListAndTags:
    """``Sandbox.list`` reports live sandboxes, filtered by app, labels and tags."""

    def test_list_reports_live_sandboxes(self, sandboxes: SandboxPool, conformance: ConformanceTarget) -> None:
        labels, app = probe_labels(), unique("app")
        sandbox = sandboxes.create(labels=labels, app=app)
        infos = Sandbox.list(conformance.provider, labels={**conformance.labels, **labels})
        assert [info.id for info in infos] == [sandbox.id]
        info = infos[0]
        assert isinstance(info, SandboxInfo)
        assert (info.app, info.provider, info.name) == (app, conformance.provider, None)
        assert info.state == SandboxState.RUNNING
        assert sandbox.id in [i.id for i in Sandbox.list(conformance.provider, app=app)]
        assert all(i.app == app for i in Sandbox.list(conformance.provider, app=app))
        assert sandbox.id not in [i.id for i in Sandbox.list(conformance.provider, app=unique("app"))]

    @requires(Capability.TAGS)
    def test_tags_are_kept_and_filter_list(self, sandboxes: SandboxPool, conformance: ConformanceTarget) -> None:
        run = unique("run")
        team_a = sandboxes.create(tags={"team": "a", "run": run})
        team_b = sandboxes.create(tags={"team": "b", "run": run})
        both = Sandbox.list(conformance.provider, tags={"run": run})
        assert {i.id for i in both} == {team_a.id, team_b.id}
        only_a = Sandbox.list(conformance.provider, tags={"run": run, "team": "a"})
        assert [i.id for i in only_a] == [team_a.id]
        assert dict(only_a[0].tags) == {"team": "a", "run": run}


class TestLifetime:
    """A sandbox ends by itself: at its lifetime (every provider) and when idle (IDLE_TIMEOUT)."""

    def test_lifetime_ends_the_sandbox(self, sandboxes: SandboxPool) -> None:
        """A command still running when the lifetime passes raises SANDBOX_NOT_FOUND; so does every later call."""
        lifetime = 3
        sandbox = sandboxes.create(timeout=lifetime)
        started = time.monotonic()
        assert sandbox.execute("echo alive").stdout == "alive\n"
        with expect_error(ErrorCode.SANDBOX_NOT_FOUND, f"a command running past the sandbox's {lifetime}s lifetime"):
            sandbox.execute("sleep 600", timeout=lifetime + 120)
        ended = time.monotonic() - started
        assert ended < lifetime + 60, f"the running command was ended {ended:.0f}s into a {lifetime}s lifetime"
        _every_call_raises_not_found(sandbox, "outlived its lifetime")

    @requires(Capability.IDLE_TIMEOUT)
    def test_idle_timeout_ends_an_idle_sandbox_not_a_busy_one(
        self, sandboxes: SandboxPool, conformance: ConformanceTarget
    ) -> None:
        idle = 4
        labels = probe_labels()
        sandbox = sandboxes.create(idle_timeout=idle, timeout=300, labels=labels)
        busy = sandbox.execute(f"sleep {idle + 3}; echo busy", timeout=120)
        assert busy.stdout == "busy\n", "a command longer than idle_timeout must keep the sandbox alive"
        idle_started = time.monotonic()
        # watch without running commands: a command is activity and would keep it alive
        if conformance.declares(Capability.LIST):
            gone = wait_for(lambda: not live_ids(conformance, labels), idle + SETTLE + 45, interval=1.0)
            assert gone, f"the sandbox was still listed {time.monotonic() - idle_started:.0f}s into idleness"
            assert time.monotonic() - idle_started >= idle - 1, "the sandbox ended before it was idle that long"
        else:
            time.sleep(idle + SETTLE)
        _every_call_raises_not_found(sandbox, "ended after idle_timeout")
