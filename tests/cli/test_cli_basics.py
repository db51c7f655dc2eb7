"""`sandboxkit providers`, `run` and `images bootstrap` as scripts use them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

CLI = str(Path(sys.executable).with_name("sandboxkit"))


def sandboxkit(*args: str, **kw: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run([CLI, *args], capture_output=True, text=True, timeout=120, **kw)  # type: ignore[call-overload,no-any-return]


def test_providers_lists_docker() -> None:
    proc = sandboxkit("providers", "--json")
    assert proc.returncode == 0
    assert any(row["name"] == "docker" and row["ok"] for row in json.loads(proc.stdout))
    assert "docker" in sandboxkit("providers").stdout


@pytest.mark.usefixtures("docker_engine")
def test_run_prints_output_and_passes_the_exit_code() -> None:
    proc = sandboxkit("run", "--", "sh", "-c", "echo to-out; echo to-err >&2; exit 7")
    assert (proc.returncode, proc.stdout, proc.stderr) == (7, "to-out\n", "to-err\n")
    proc = sandboxkit("run", "--", "python3", "-c", "import json, sys; print(json.dumps({'py': sys.version_info[0]}))")
    assert proc.returncode == 0
    assert json.loads(proc.stdout) == {"py": 3}
    proc = sandboxkit("run", "--", "echo hi | tr a-z A-Z")  # one word with spaces: a shell line
    assert proc.stdout == "HI\n"


@pytest.mark.usefixtures("docker_engine")
def test_run_leaves_no_container(docker_engine: object, session_label: str) -> None:
    import docker

    assert isinstance(docker_engine, docker.DockerClient)
    before = {c["Id"] for c in docker_engine.api.containers(all=True, filters={"label": session_label})}
    assert sandboxkit("run", "--", "true").returncode == 0
    after = {c["Id"] for c in docker_engine.api.containers(all=True, filters={"label": session_label})}
    assert after <= before


@pytest.mark.usefixtures("docker_engine")
def test_errors_exit_3_with_the_code() -> None:
    proc = sandboxkit("run", "--image", "sandboxkit/absent:never", "--", "true")
    assert proc.returncode == 3
    assert "SANDBOX_CREATION_FAILED" in proc.stderr
    proc = sandboxkit("run", "--provider", "nope", "--", "true")
    assert proc.returncode == 3
    assert "PROVIDER_NOT_FOUND" in proc.stderr
    assert sandboxkit("run").returncode == 2


@pytest.mark.usefixtures("docker_engine")
def test_images_bootstrap_is_idempotent() -> None:
    proc = sandboxkit("images", "bootstrap", "--kind", "busybox")
    assert proc.returncode == 0
    assert proc.stdout.strip() == "sandboxkit/busybox:latest"
    assert "already present" in proc.stderr


@pytest.mark.usefixtures("docker_engine")
def test_busybox_image_runs_sandboxes() -> None:
    proc = sandboxkit("run", "--image", "sandboxkit/busybox:latest", "--", "sh", "-c", "echo busy; ls /bin/busybox")
    assert proc.returncode == 0
    assert proc.stdout == "busy\n/bin/busybox\n"
