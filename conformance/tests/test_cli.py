"""``sandboxkit conformance``: runs the suite from the command line, and costs nothing until invoked."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

SANDBOXKIT = [sys.executable, "-m", "sandboxkit.cli"]


def test_the_cli_runs_the_suite_and_writes_the_report(tmp_path: Path, docker_engine: Any) -> None:
    report = tmp_path / "report.json"
    selected = "test_exit_codes_are_results or test_stdout_and_stderr_are_exact_and_separate"
    run = subprocess.run(
        [*SANDBOXKIT, "conformance", "--provider", "docker", "--report", str(report), "--", "-k", selected],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    assert "sandboxkit-conformance: provider 'docker', capabilities: " in run.stdout, "the header names the provider"
    docker = json.loads(report.read_text())["providers"]["docker"]
    assert docker["matrix"]["core"] == {**docker["matrix"]["core"], "status": "passed", "passed": 2, "failed": 0}
    assert docker["summary"]["passed"] == 2
    assert {t["nodeid"].rsplit("::", 1)[1] for t in docker["tests"]} >= {"test_exit_codes_are_results"}


def test_the_cli_serves_the_network_test_hosts_itself(tmp_path: Path, docker_engine: Any) -> None:
    """With no conftest, a provider declaring NETWORK_POLICY still runs those tests: the default hosts start
    on the local engine, and are gone with their network when the run ends."""
    session = "sbkc" + uuid.uuid4().hex[:8]
    report = tmp_path / "report.json"
    run = subprocess.run(
        [*SANDBOXKIT, "conformance", "--provider", "docker", "--report", str(report), "--", "-k", "allowed_and_denied"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "SANDBOXKIT_CONFORMANCE_SESSION": session},
    )
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    matrix = json.loads(report.read_text())["providers"]["docker"]["matrix"]["network_policy"]
    assert (matrix["status"], matrix["passed"]) == ("passed", 1), matrix
    label = f"sandboxkit.conformance_session={session}"
    assert not docker_engine.containers.list(all=True, filters={"label": label}), "test hosts outlived the run"
    assert not docker_engine.networks.list(filters={"label": label}), "the test hosts' network outlived the run"


def test_an_unknown_provider_is_refused_before_pytest_starts(tmp_path: Path) -> None:
    run = subprocess.run(
        [*SANDBOXKIT, "conformance", "--provider", "sbkc-no-such-provider"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert run.returncode == 3
    assert "PROVIDER_NOT_FOUND" in run.stderr and "sbkc-no-such-provider" in run.stderr
    assert "test session starts" not in run.stdout


def test_the_cli_does_not_import_pytest_unless_the_command_runs() -> None:
    probe = "import sys, sandboxkit.cli as c; c.build_parser(); print('pytest' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
    helptext = subprocess.run([*SANDBOXKIT, "--help"], capture_output=True, text=True, check=True).stdout
    assert "conformance" in helptext


def test_the_cli_takes_a_known_failures_file_and_provider_options(tmp_path: Path, docker_engine: Any) -> None:
    table = tmp_path / "known.json"
    table.write_text(json.dumps({"TestExecute::test_exit_codes_are_results": "sbkc-listed-but-passing"}))
    report = tmp_path / "report.json"
    options = {"image": "sandboxkit/busybox:latest", "provider_options": {"pull": "never"}}
    args = ["--options", json.dumps(options), "--known-failures", str(table), "--report", str(report)]
    selected = "test_exit_codes_are_results or test_stdout_and_stderr_are_exact_and_separate"
    run = subprocess.run(
        [*SANDBOXKIT, "conformance", "--provider", "docker", *args, "--", "-k", selected],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 1, "a listed test that passes is a strict XPASS: the run fails"
    tests = {t["nodeid"].rsplit("::", 1)[1]: t for t in json.loads(report.read_text())["providers"]["docker"]["tests"]}
    assert tests["test_exit_codes_are_results"]["outcome"] == "failed"
    assert "XPASS(strict)" in tests["test_exit_codes_are_results"]["reason"]
    assert "sbkc-listed-but-passing" in tests["test_exit_codes_are_results"]["reason"]
    assert tests["test_stdout_and_stderr_are_exact_and_separate"]["outcome"] == "passed"


def test_the_cli_options_reach_every_suite_sandbox(tmp_path: Path, docker_engine: Any) -> None:
    options = {"image": "sbkc-no-such-image:latest", "provider_options": {"pull": "never"}}
    args = ["--options", json.dumps(options), "--", "-k", "test_exit_codes_are_results"]
    run = subprocess.run(
        [*SANDBOXKIT, "conformance", "--provider", "docker", *args],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 1
    assert "sbkc-no-such-image" in run.stdout, run.stdout[-3000:]


def test_the_cli_refuses_a_bad_known_failures_file(tmp_path: Path) -> None:
    missing = subprocess.run(
        [*SANDBOXKIT, "conformance", "--provider", "docker", "--known-failures", str(tmp_path / "nope.json")],
        capture_output=True,
        text=True,
    )
    assert missing.returncode == 2
    assert "no such file" in missing.stderr
    bad = tmp_path / "bad.json"
    bad.write_text("[1, 2]")
    refused = subprocess.run(
        [*SANDBOXKIT, "conformance", "--provider", "docker", "--known-failures", str(bad)],
        capture_output=True,
        text=True,
    )
    assert refused.returncode == 2
    assert "must be a JSON object" in refused.stderr
