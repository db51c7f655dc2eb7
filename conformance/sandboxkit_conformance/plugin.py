"""The pytest plugin of the conformance suite (loaded through the ``pytest11`` entry point).

Inert for every test that is not part of :mod:`sandboxkit_conformance.suite`. For suite tests it

- resolves the provider under test from the fixtures a provider's conftest overrides
  (``sandboxkit_provider``, ``sandboxkit_create_options``, ``sandboxkit_expected_failures``, and the
  resource hooks ``sandboxkit_make_volume``, ``sandboxkit_make_secret``, ``sandboxkit_gpus``,
  ``sandboxkit_gpu_options``);
- skips tests whose capabilities the provider does not declare, with the capability in the reason,
  and runs the provider's known failures as strict xfail;
- labels every sandbox with the session label and reaps them all at session end, also after
  failures and Ctrl+C; a sandbox the suite closed that the provider still lists fails the session;
- prints the suite version and the provider's name, version and capabilities, a capability matrix
  at the end, and with ``--conformance-report PATH`` writes it as JSON.
"""

from __future__ import annotations

import contextlib
import inspect
import json
from collections.abc import Generator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

import sandboxkit
from sandboxkit import Sandbox
from sandboxkit_conformance._hooks import cli_secrets, cli_volumes
from sandboxkit_conformance._reaper import ReapReport, reap
from sandboxkit_conformance._report import PROVIDER_PROPERTY, REQUIRES_PROPERTY, Results
from sandboxkit_conformance._skeleton import missing_primitive
from sandboxkit_conformance._target import (
    ABOUT_MARK,
    LABEL_KEY,
    REQUIRES_MARK,
    SUITE_VERSION,
    ConformanceTarget,
    MakeSecret,
    MakeVolume,
    SandboxPool,
    new_session_id,
)
from sandboxkit_conformance.testhosts import NetworkHosts, network_hosts

SUITE_PACKAGE = "sandboxkit_conformance.suite"
#: where the Docker provider (and providers built on it) take the network their egress reaches out through
EGRESS_NETWORK_ENV = "SANDBOXKIT_DOCKER_EGRESS_NETWORK"


@dataclass
class _State:
    session: str
    results: Results = field(default_factory=Results)
    targets: dict[str, ConformanceTarget] = field(default_factory=dict)
    #: the default network test hosts, started once per session on first use
    hosts: NetworkHosts | None = None


_STATE = pytest.StashKey[_State]()
_TARGET = pytest.StashKey[ConformanceTarget]()


def _state(config: pytest.Config) -> _State:
    return config.stash[_STATE]


def suite_catalog() -> dict[str, set[str]]:
    """Every test class of the suite with its test names: what the expected-failures table may name."""
    from sandboxkit_conformance import suite

    catalog: dict[str, set[str]] = {}
    for name, obj in vars(suite).items():
        if name.startswith("Test") and inspect.isclass(obj):
            catalog[name] = {n for n in dir(obj) if n.startswith("test_")}
    return catalog


def is_suite_item(item: pytest.Item) -> bool:
    """True for tests defined in the conformance suite (also when star-imported elsewhere)."""
    function = getattr(item, "function", None)
    return str(getattr(function, "__module__", "")).startswith(SUITE_PACKAGE)


# ---------------------------------------------------------------- pytest hooks
def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("sandboxkit-conformance")
    group.addoption(
        "--sandboxkit-provider",
        dest="sandboxkit_provider",
        metavar="NAME",
        help="provider the conformance suite tests, when no conftest overrides the sandboxkit_provider fixture",
    )
    group.addoption(
        "--sandboxkit-create-options",
        dest="sandboxkit_create_options",
        metavar="JSON",
        help='Sandbox.create options for every suite sandbox, as JSON (e.g. \'{"image": "python:3.12"}\')',
    )
    group.addoption(
        "--sandboxkit-known-failures",
        dest="sandboxkit_known_failures",
        metavar="FILE",
        help="known failures, when no conftest overrides sandboxkit_expected_failures: a JSON file "
        '{"TestClass::test_name": "reason"}; they run as strict xfail',
    )
    group.addoption(
        "--conformance-report",
        dest="conformance_report",
        metavar="PATH",
        help="write the conformance capability matrix and per-test outcomes to PATH as JSON",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", f"{REQUIRES_MARK}(*capabilities): conformance test that needs these provider capabilities"
    )
    config.addinivalue_line("markers", f"{ABOUT_MARK}(capability): conformance test reported under a capability")
    state = config.stash[_STATE] = _State(session=new_session_id())
    config.pluginmanager.register(_SessionHooks(config, state), "sandboxkit-conformance-session")


class _SessionHooks:
    """The stateful part of the plugin: report header, outcomes, reaping, summary, JSON."""

    def __init__(self, config: pytest.Config, state: _State) -> None:
        self.config = config
        self.state = state

    def pytest_report_header(self) -> list[str]:
        lines = [
            f"sandboxkit-conformance {SUITE_VERSION} (sandboxkit {sandboxkit.__version__}), "
            f"session label {LABEL_KEY}={self.state.session}"
        ]
        name = self.config.getoption("sandboxkit_provider", None)
        if name:
            try:
                caps = ", ".join(sorted(c.value for c in Sandbox(name).capabilities)) or "none"
                lines.append(f"sandboxkit-conformance: provider {name!r}, capabilities: {caps}")
            except sandboxkit.SandboxError as exc:
                lines.append(f"sandboxkit-conformance: provider {name!r} cannot be loaded: {exc}")
        return lines

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(self, item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, Any, Any]:
        report = yield
        if is_suite_item(item):
            missing = missing_primitive(call.excinfo.value) if call.excinfo is not None else None
            if missing is not None and report.failed:
                report.longrepr = missing
            target = item.stash.get(_TARGET, None)
            if target is None:  # the test failed before the gate ran: attribute it when unambiguous
                targets = list(self.state.targets.values())
                target = targets[0] if len(targets) == 1 else None
            marks = [*item.iter_markers(REQUIRES_MARK), *item.iter_markers(ABOUT_MARK)]
            needed = [cap.value for mark in marks for cap in mark.args]
            report.user_properties.append((PROVIDER_PROPERTY, target.provider if target else "unknown"))
            report.user_properties.append((REQUIRES_PROPERTY, ",".join(dict.fromkeys(needed))))
        return report

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        self.state.results.record(report)

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        interrupted = exitstatus == pytest.ExitCode.INTERRUPTED
        for target in self.state.targets.values():
            try:
                result = reap(target, second_pass=interrupted)
            except KeyboardInterrupt:  # a second Ctrl+C: stop reaping, and say what is left to do
                result = ReapReport(target.provider)
                result.problems.append(
                    "reaping was interrupted; remove the sandboxes labelled "
                    f"{LABEL_KEY}={target.session} (e.g. `sandboxkit gc`)"
                )
            previous = self.state.results.reaps.get(target.provider)  # same provider, other create options
            self.state.results.reaps[target.provider] = previous.merged(result) if previous else result
            if result.leaked and session.exitstatus == pytest.ExitCode.OK:
                session.exitstatus = pytest.ExitCode.TESTS_FAILED
        path = self.config.getoption("conformance_report", None)
        if path:
            self.state.results.write(path, self.state.session)

    def pytest_terminal_summary(self, terminalreporter: pytest.TerminalReporter) -> None:
        lines = self.state.results.summary_lines()
        if not lines:
            return
        terminalreporter.write_sep("=", "sandboxkit conformance")
        for line in lines:
            alarm = line.lstrip().startswith(("LEAK", "reaper"))
            terminalreporter.write_line(line, red=alarm, bold=alarm)
        path = self.config.getoption("conformance_report", None)
        if path:
            terminalreporter.write_line(f"conformance report written to {path}")


# ---------------------------------------------------------------- provider-facing fixtures
@pytest.fixture(scope="session")
def sandboxkit_provider(request: pytest.FixtureRequest) -> str:
    """The provider under test. Override in your conftest: ``return "myprovider"``."""
    name = request.config.getoption("sandboxkit_provider", None)
    if not name:
        pytest.fail(
            "the conformance suite does not know which provider to test: override the "
            "`sandboxkit_provider` fixture in your conftest (scope='session', return the provider's "
            "registry name) or pass --sandboxkit-provider NAME",
            pytrace=False,
        )
    return str(name)


@pytest.fixture(scope="session")
def sandboxkit_create_options(request: pytest.FixtureRequest) -> dict[str, Any]:
    """Options for every sandbox the suite creates (e.g. ``{"image": ...}``). Override in your conftest."""
    raw = request.config.getoption("sandboxkit_create_options", None)
    if not raw:
        return {}
    try:
        options = json.loads(raw)
    except json.JSONDecodeError as exc:
        pytest.fail(f"--sandboxkit-create-options is not valid JSON: {exc}", pytrace=False)
    if not isinstance(options, dict):
        pytest.fail("--sandboxkit-create-options must be a JSON object", pytrace=False)
    return options


@pytest.fixture(scope="session")
def sandboxkit_expected_failures(request: pytest.FixtureRequest) -> dict[str, Any]:
    """Known failures: ``{"TestClass::test_name": "reason"}``, run as strict xfail. Override in your conftest."""
    path = request.config.getoption("sandboxkit_known_failures", None)
    if not path:
        return {}
    try:
        table = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        pytest.fail(f"--sandboxkit-known-failures {path!r} cannot be read as JSON: {exc}", pytrace=False)
    if not isinstance(table, dict):
        pytest.fail(f"--sandboxkit-known-failures {path!r} must hold a JSON object", pytrace=False)
    return table


@pytest.fixture(scope="session")
def sandboxkit_gpus() -> list[str]:
    """GPU requests the GPU tests make, one sandbox each (``"T4"``, ``"A100:2"``). Override to pick cheap ones."""
    return ["T4"]


@pytest.fixture
def sandboxkit_gpu_options() -> dict[str, Any]:
    """Extra create options for GPU sandboxes (e.g. a simulate switch). Override in your conftest."""
    return {}


@pytest.fixture
def sandboxkit_make_volume(sandboxkit_provider: str) -> Iterator[MakeVolume]:
    """``make() -> name`` of a fresh named volume, removed after the test. Default: ``sandboxkit volume``."""
    make, cleanup = cli_volumes(sandboxkit_provider)
    yield make
    cleanup()


@pytest.fixture
def sandboxkit_make_secret(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> Iterator[MakeSecret]:
    """``make({"K": "v"}) -> name`` of a named secret, removed after the test.

    Default: ``sandboxkit secret create`` into a secret store under a temporary ``$XDG_CONFIG_HOME``.
    """
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    make, cleanup = cli_secrets()
    yield make
    cleanup()


@pytest.fixture
def sandboxkit_network_hosts(request: pytest.FixtureRequest) -> NetworkHosts:
    """The two test hosts the network-policy tests reach.

    Default: when a Docker engine answers, the hosts start on it once per session (see
    :func:`sandboxkit_conformance.testhosts.network_hosts`) and ``$SANDBOXKIT_DOCKER_EGRESS_NETWORK``
    points the egress at their network, which the Docker provider and providers built on it honour.
    A provider whose egress is reached another way overrides this fixture and returns the hosts with
    ``options`` set to the create options that put a sandbox's egress on that network. Function-scoped
    here, so that a provider that declares no NETWORK_POLICY is skipped by the capability gate (an
    autouse fixture) before this default is reached; overrides may be session-scoped.
    """
    state = _state(request.config)
    if state.hosts is None:
        state.hosts = _start_default_hosts(request.config, state.session)
    return state.hosts


def _start_default_hosts(config: pytest.Config, session: str) -> NetworkHosts:
    try:
        import docker

        client = docker.from_env(timeout=10)
        client.ping()
    except Exception as exc:
        pytest.fail(
            "the provider declares network_policy and the default test hosts need a Docker engine, which did not "
            f"answer ({type(exc).__name__}); start one, or override the `sandboxkit_network_hosts` fixture in your "
            "conftest (see sandboxkit_conformance.testhosts)",
            pytrace=False,
        )
    stack = contextlib.ExitStack()
    stack.callback(client.close)
    hosts = stack.enter_context(network_hosts(client, {f"sandboxkit.{LABEL_KEY}": session}))
    stack.enter_context(pytest.MonkeyPatch.context()).setenv(EGRESS_NETWORK_ENV, hosts.network)
    config.add_cleanup(stack.close)
    return hosts


# ---------------------------------------------------------------- suite fixtures
@pytest.fixture(scope="class")
def conformance(
    request: pytest.FixtureRequest,
    sandboxkit_provider: str,
    sandboxkit_create_options: dict[str, Any],
    sandboxkit_expected_failures: dict[str, str],
) -> ConformanceTarget:
    """The provider under test (one per provider and options in a session)."""
    state = _state(request.config)
    key = json.dumps([sandboxkit_provider, sandboxkit_create_options], sort_keys=True, default=repr)
    target = state.targets.get(key)
    if target is None:
        target = ConformanceTarget.resolve(
            sandboxkit_provider, sandboxkit_create_options, sandboxkit_expected_failures, state.session, suite_catalog()
        )
        state.targets[key] = target
        state.results.targets.setdefault(target.provider, target)
        _announce(request.config, f"sandboxkit-conformance {SUITE_VERSION}: {target.describe()}")
    return target


def _announce(config: pytest.Config, line: str) -> None:
    """Print a header line as soon as the provider is known (past output capturing)."""
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    capture = config.pluginmanager.get_plugin("capturemanager")
    if reporter is None:
        return
    with capture.global_and_fixture_disabled() if capture is not None else contextlib.nullcontext():
        reporter.ensure_newline()
        reporter.write_line(line, cyan=True)


@pytest.fixture(scope="class")
def shared_sandbox(request: pytest.FixtureRequest, conformance: ConformanceTarget) -> Iterator[Sandbox]:
    """One sandbox with the provider's create options, shared by the tests of a class."""
    conformance.gate(request.node)
    sandbox = conformance.create()
    yield sandbox
    conformance.close(sandbox)


@pytest.fixture
def sandboxes(conformance: ConformanceTarget) -> Iterator[SandboxPool]:
    """Fresh sandboxes for one test: ``sandboxes.create(**options)``; closed after the test."""
    pool = SandboxPool(conformance)
    yield pool
    pool.close_all()


@pytest.fixture(autouse=True)
def _sandboxkit_gate(request: pytest.FixtureRequest) -> None:
    """For suite tests: skip on undeclared capabilities, apply the known-failures table."""
    item = request.node
    if not isinstance(item, pytest.Item) or not is_suite_item(item):
        return
    target: ConformanceTarget = request.getfixturevalue("conformance")
    item.stash[_TARGET] = target
    target.gate(item)
    reason = target.expected_failure(item)
    if reason is not None:
        request.applymarker(
            pytest.mark.xfail(reason=f"known failure of provider {target.provider!r}: {reason}", strict=True)
        )
