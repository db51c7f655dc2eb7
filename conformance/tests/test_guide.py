"""The provider author's guide (conformance/README.md) works: following it gives a green run.

The guide's files are the worked example's files (checked verbatim), and the example is installed
the way the guide says (pip, from its own directory) and runs the whole suite, unfiltered.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sandboxkit_conformance import LABEL_KEY, SESSION_ENV

CONFORMANCE = Path(__file__).parents[1]
GUIDE = CONFORMANCE / "README.md"
EXAMPLE = CONFORMANCE / "examples" / "sandboxkit-dockercli"
FILE_BLOCK = re.compile(r"<!-- file: (?P<path>\S+) -->\n```\w*\n(?P<body>.*?)```", re.S)


def test_the_guide_shows_the_example_files_verbatim() -> None:
    blocks = {m["path"]: m["body"] for m in FILE_BLOCK.finditer(GUIDE.read_text())}
    assert set(blocks) == {
        "pyproject.toml",
        "sandboxkit_dockercli/plugin.py",
        "tests/conftest.py",
        "tests/test_conformance.py",
    }
    for path, body in blocks.items():
        assert (EXAMPLE / path).read_text() == body, f"the guide's {path} differs from {EXAMPLE / path}"


@pytest.fixture
def session(docker_engine: Any) -> Iterator[str]:
    """The run's session id; its sandboxes and volumes are removed afterwards whatever happens."""
    session = uuid.uuid4().hex[:12]
    yield session
    label = f"sandboxkit-dockercli.label.{LABEL_KEY}={session}"
    for container in docker_engine.api.containers(all=True, filters={"label": label}):
        docker_engine.api.remove_container(container["Id"], force=True)


@pytest.mark.timeout(960)  # the whole suite in a subprocess, which has 900 s of its own
def test_a_provider_built_by_the_guide_passes_the_whole_suite(tmp_path: Path, session: str) -> None:
    package = shutil.copytree(EXAMPLE, tmp_path / "sandboxkit-dockercli")
    site = tmp_path / "site"
    subprocess.run(  # step 5: install the package (its dependencies are already in this environment)
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--target", site, package],
        check=True,
    )
    report = tmp_path / "report.json"
    env = {**os.environ, "PYTHONPATH": str(site), SESSION_ENV: session}
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--conformance-report", str(report)],
        cwd=package,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-2000:]
    assert "provider 'dockercli' (version 0.1.0), capabilities: list, network_block, reconnect," in run.stdout
    matrix = json.loads(report.read_text())["providers"]["dockercli"]["matrix"]
    assert matrix["core"]["status"] == "passed" and matrix["core"]["failed"] == 0
    for capability in ("stdin", "streaming", "list", "reconnect", "volumes", "network_block"):
        assert matrix[capability]["declared"] and matrix[capability]["status"] == "passed", capability
    assert matrix["gpu"]["declared"] is False and matrix["gpu"]["status"] == "skipped"
