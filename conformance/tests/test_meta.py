"""The suite catches broken providers, each with a message that says what is wrong.

Every run here is a real pytest subprocess running the real suite against a real provider from
``broken_providers`` (the Docker provider with one deliberate bug each). ``sbkc-honest`` is the
same wrapping with no bug: it passes the very tests the broken ones fail.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import broken_providers
import pytest
from sandboxkit_conformance import LABEL_KEY, SESSION_ENV, SUITE_VERSION

from sandboxkit import Capability

HERE = Path(__file__).parent

CONFTEST = """
import broken_providers
import pytest

import sandboxkit

for provider_class in broken_providers.PROVIDERS:
    sandboxkit.register_provider(provider_class)


@pytest.fixture(scope="session")
def sandboxkit_provider():
    return {provider!r}


@pytest.fixture(scope="session")
def sandboxkit_create_options():
    return {{"image": "sandboxkit/base:bookworm", "provider_options": {{"pull": "never"}}}}


@pytest.fixture(scope="session")
def sandboxkit_expected_failures():
    return {failures!r}
"""

RunSuite = Callable[..., pytest.RunResult]


@pytest.fixture
def session(monkeypatch: pytest.MonkeyPatch, docker_engine: Any) -> Iterator[str]:
    """The conformance session id of the inner runs; whatever they leave behind is removed afterwards."""
    session = uuid.uuid4().hex[:12]
    monkeypatch.setenv(SESSION_ENV, session)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(HERE), os.environ.get("PYTHONPATH")])))
    yield session
    for container in _labelled(docker_engine, session):
        docker_engine.api.remove_container(container["Id"], force=True)


def _labelled(engine: Any, session: str) -> list[dict[str, Any]]:
    return list(engine.api.containers(all=True, filters={"label": f"sandboxkit.label.{LABEL_KEY}={session}"}))


@pytest.fixture
def run_suite(pytester: pytest.Pytester, session: str) -> RunSuite:
    """``run_suite(provider, *pytest_args, failures={})``: the suite against ``provider`` in a subprocess."""

    def run(provider: str, *args: str, failures: dict[str, str] | None = None) -> pytest.RunResult:
        pytester.makeconftest(CONFTEST.format(provider=provider, failures=failures or {}))
        pytester.makepyfile(test_conformance="from sandboxkit_conformance.suite import *  # noqa: F403\n")
        return pytester.runpytest_subprocess("-p", "no:cacheprovider", "-rsx", *args, timeout=600)

    return run


def test_control_the_honest_wrapper_passes_what_the_broken_ones_fail(run_suite: RunSuite) -> None:
    selected = (
        "test_exit_codes_are_results or test_timeout_raises_with_the_partial_output"
        " or test_close_ends_the_sandbox_at_the_provider or TestNetworkBlock"
        " or TestCancellation or test_the_whole_tree_is_dead_when_the_timeout_is_raised"
    )
    result = run_suite("sbkc-honest", "-k", selected)
    result.assert_outcomes(passed=9)
    assert result.ret == 0


def test_a_wrong_exit_code_fails_the_suite(run_suite: RunSuite) -> None:
    result = run_suite("sbkc-wrong-exit-code", "-k", "test_exit_codes_are_results")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*`exit 2` returned exit_code 1*"])


def test_a_swallowed_timeout_fails_the_suite(run_suite: RunSuite) -> None:
    result = run_suite("sbkc-swallowed-timeout", "-k", "test_timeout_raises_with_the_partial_output")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*`sleep 120` with timeout=2: expected SandboxError COMMAND_TIMEOUT, but nothing*"])


def test_an_ignored_timeout_fails_the_suite(run_suite: RunSuite) -> None:
    """The facade's safety net still raises COMMAND_TIMEOUT, but too late: the suite says so."""
    result = run_suite("sbkc-ignored-timeout", "-k", "test_timeout_raises_with_the_partial_output")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*the provider did not stop the command itself*"])


def test_a_leaking_provider_fails_the_suite(run_suite: RunSuite, docker_engine: Any, session: str) -> None:
    result = run_suite("sbkc-leaking", "-k", "test_close_ends_the_sandbox_at_the_provider")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*close() returned for sandbox *, but the provider still lists*",
            "*LEAK: 1 sandbox(es) closed by the suite are still listed by the provider*",
        ]
    )
    assert result.ret != 0
    assert len(_labelled(docker_engine, session)) == 1, "the leaked container is real (the fixture removes it)"


def test_a_lying_capability_fails_the_suite(run_suite: RunSuite) -> None:
    """Checked as behaviour: the lying sandbox reaches a listener in another sandbox (the host's loopback it cannot)."""
    result = run_suite("sbkc-lying-network", "-k", "TestNetworkBlock")
    result.assert_outcomes(failed=1, passed=1)
    result.stdout.fnmatch_lines(["*a network-blocked sandbox connected to another sandbox's listener at *"])


def test_a_timeout_reported_before_the_kill_fails_the_suite(run_suite: RunSuite) -> None:
    result = run_suite("sbkc-late-kill", "-k", "test_the_whole_tree_is_dead_when_the_timeout_is_raised")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*processes of the timed-out command still ran after COMMAND_TIMEOUT was raised*"])


def test_a_cancel_that_leaves_the_command_running_fails_the_suite(run_suite: RunSuite) -> None:
    result = run_suite("sbkc-orphaning", "-k", "TestCancellation")
    result.assert_outcomes(failed=3)
    result.stdout.fnmatch_lines(
        [
            "*after cancelling execute() through a cancel scope, processes of the command still ran*",
            "*after a `break` out of stream(), processes of the command still ran*",
            "*after a `break` out of `async for ... in stream()`, the command still ran*",
        ]
    )


def test_an_empty_skeleton_is_told_which_primitive_to_write(run_suite: RunSuite) -> None:
    result = run_suite("sbkc-skeleton", "-k", "test_exit_codes_are_results")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*SkeletonProvider.create() is not implemented yet*return a running sandbox*"])
    assert "failed unexpectedly" not in result.stdout.str()
    half = run_suite("sbkc-half-written", "-k", "test_exit_codes_are_results")
    half.assert_outcomes(failed=1)
    half.stdout.fnmatch_lines(["*NoExec.exec() is not implemented yet*run request.argv*"])


def test_undeclared_capabilities_skip_with_their_name_and_are_refused(run_suite: RunSuite) -> None:
    result = run_suite("sbkc-narrow", "-k", "TestStdin or test_user or test_an_undeclared_capability_is_refused")
    declared = broken_providers.NarrowProvider.capabilities
    undeclared = len(Capability) - len(declared)
    result.assert_outcomes(passed=undeclared, skipped=4 + 1 + len(declared))
    result.stdout.fnmatch_lines(
        [
            "SKIPPED [[]1[]] *test_execute.py:*: provider 'sbkc-narrow' does not declare capability 'user' (*.USER)",
            "SKIPPED [[]1[]] *test_execute.py:*: provider 'sbkc-narrow' does not declare capability 'stdin' (*.STDIN)",
        ]
    )


def test_known_failures_run_as_strict_xfail(run_suite: RunSuite) -> None:
    table = {"TestExecute::test_exit_codes_are_results": "collapses exit codes to 1 (tracked upstream)"}
    broken = run_suite("sbkc-wrong-exit-code", "-k", "test_exit_codes_are_results", failures=table)
    broken.assert_outcomes(xfailed=1)
    broken.stdout.fnmatch_lines(["*known failure of provider 'sbkc-wrong-exit-code': collapses exit codes*"])
    fixed = run_suite("sbkc-honest", "-k", "test_exit_codes_are_results", failures=table)
    fixed.assert_outcomes(failed=1)
    fixed.stdout.fnmatch_lines(["*XPASS(strict)*collapses exit codes*"])


def test_the_known_failures_table_is_checked(run_suite: RunSuite) -> None:
    table = {"TestExecute::test_no_such_test": "typo", "TestExecute::test_exit_codes_are_results": " "}
    result = run_suite("sbkc-honest", "-k", "test_exit_codes_are_results", failures=table)
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        [
            "*sandboxkit_expected_failures of provider 'sbkc-honest' is invalid:*",
            "*'TestExecute::test_no_such_test': no such suite test*",
            "*'TestExecute::test_exit_codes_are_results': a reason is required*",
        ]
    )


def test_header_summary_and_json_report(run_suite: RunSuite, pytester: pytest.Pytester) -> None:
    report = pytester.path / "out" / "report.json"
    selected = "test_exit_codes_are_results or TestStdin or TestGpu or test_an_undeclared_capability_is_refused"
    result = run_suite("sbkc-narrow", "-k", selected, "--conformance-report", str(report))
    result.stdout.fnmatch_lines(
        [
            f"sandboxkit-conformance {SUITE_VERSION} (sandboxkit *), session label {LABEL_KEY}=*",
            f"sandboxkit-conformance {SUITE_VERSION}: provider 'sbkc-narrow' (version unknown), capabilities: list,*",
            "*= sandboxkit conformance =*",
            "  core * passed * 1 passed",
            "  stdin (not declared) * skipped * 1 passed, 4 skipped",
            f"conformance report written to {report}",
        ]
    )
    data = json.loads(report.read_text())
    assert (data["suite"], data["suite_version"]) == ("sandboxkit-conformance", SUITE_VERSION)
    narrow = data["providers"]["sbkc-narrow"]
    assert "stdin" not in narrow["capabilities"] and "streaming" in narrow["capabilities"]
    matrix = narrow["matrix"]
    assert matrix["core"]["status"] == "passed" and matrix["core"]["passed"] == 1
    assert matrix["stdin"] == {**matrix["stdin"], "declared": False, "status": "skipped", "skipped": 4, "passed": 1}
    assert matrix["gpu"]["declared"] is False and matrix["gpu"]["skipped"] == 1
    assert matrix["streaming"] == {**matrix["streaming"], "declared": True, "status": "skipped", "skipped": 1}
    outcomes = {t["nodeid"].split("::", 1)[1]: t for t in narrow["tests"]}
    stdin_test = outcomes["TestStdin::test_binary_arrives_exactly"]
    assert stdin_test["outcome"] == "skipped" and "'stdin'" in stdin_test["reason"]
    assert outcomes["TestExecute::test_exit_codes_are_results"]["outcome"] == "passed"


HOLD = """
import faulthandler
import signal
import time

from sandboxkit import Sandbox


def test_hold(conformance, sandboxes):
    faulthandler.register(signal.SIGUSR1, all_threads=True)  # the parent asks for the threads when it waits long
    # as in a terminal: a run started in the background (`cmd &` in a script) inherits SIGINT
    # ignored, and Python then installs no KeyboardInterrupt handler at all
    signal.signal(signal.SIGINT, signal.default_int_handler)
    sandboxes.create()  # held by the suite: closed by the fixture teardown
    Sandbox.create(conformance.provider, **conformance.options())  # not held: only the label sweep finds it
    print("READY", flush=True)
    time.sleep(300)
"""


def test_ctrl_c_still_reaps_every_sandbox(
    pytester: pytest.Pytester, session: str, docker_engine: Any, run_suite: RunSuite
) -> None:
    pytester.makeconftest(CONFTEST.format(provider="sbkc-honest", failures={}))
    pytester.makepyfile(test_hold=HOLD)
    proc = subprocess.Popen(
        [sys.executable, "-X", "faulthandler", "-m", "pytest", "-s", "-p", "no:cacheprovider", "test_hold.py"],
        cwd=pytester.path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert proc.stdout is not None
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if "READY" in line:
            break
    assert len(_labelled(docker_engine, session)) == 2, "".join(lines)
    proc.send_signal(signal.SIGINT)
    try:
        rest, _ = proc.communicate(timeout=90)
    except subprocess.TimeoutExpired:  # slow: have it print where every thread is, and wait on
        proc.send_signal(signal.SIGUSR1)
        try:
            rest, _ = proc.communicate(timeout=150)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGABRT)  # faulthandler (-X faulthandler) dumps the threads again
            rest, _ = proc.communicate(timeout=30)
            pytest.fail("the session did not end within 240 s of Ctrl+C:\n" + "".join(lines) + rest)
    output = "".join(lines) + rest
    assert "KeyboardInterrupt" in output, output
    assert "reaped at session end: 1 sandbox(es)" in output, output
    assert _labelled(docker_engine, session) == [], f"sandboxes left after Ctrl+C:\n{output}"


INTERRUPTED = """
import pytest


def test_runs_to_its_end():
    pass


def test_is_interrupted():
    raise KeyboardInterrupt  # what Ctrl+C raises in the middle of a test


# filed as suite tests, as the plugin sees them (the suite's own tests take minutes to reach a Ctrl+C)
test_runs_to_its_end.__module__ = test_is_interrupted.__module__ = "sandboxkit_conformance.suite.sbkc_meta"
"""


def test_the_report_records_an_interrupted_test_as_interrupted(pytester: pytest.Pytester, session: str) -> None:
    pytester.makeconftest(CONFTEST.format(provider="sbkc-honest", failures={}))
    pytester.makepyfile(test_interrupt=INTERRUPTED)
    report = pytester.path / "report.json"
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--conformance-report", str(report), timeout=300)
    assert result.ret == pytest.ExitCode.INTERRUPTED
    honest = json.loads(report.read_text())["providers"]["sbkc-honest"]
    outcomes = {t["nodeid"].rsplit("::", 1)[1]: t["outcome"] for t in honest["tests"]}
    assert outcomes == {"test_runs_to_its_end": "passed", "test_is_interrupted": "interrupted"}
    assert honest["matrix"]["core"]["status"] == "interrupted"
    assert honest["summary"] == {"passed": 1, "interrupted": 1}
