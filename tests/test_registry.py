"""Provider discovery through pluggy entry points: lazy, fault tolerant, helpful when wrong."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path

import pytest

from sandboxkit import ErrorCode, Sandbox, SandboxError
from sandboxkit._registry import Registry
from sandboxkit.spi import ProviderRecord, hookimpl

PY = sys.executable
CLI = str(Path(sys.executable).with_name("sandboxkit"))


def test_listing_providers_imports_no_provider_sdk() -> None:
    code = (
        "import sys, sandboxkit; names=[p.name for p in sandboxkit.providers()];"
        "print(names, 'docker' in sys.modules, 'sandboxkit_docker.provider' in sys.modules)"
    )
    out = subprocess.run([PY, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "'docker'" in out
    assert out.strip().endswith("False False")


def _fake_distribution(tmp_path: Path, entry_points: str) -> dict[str, str]:
    """A real installed-distribution layout (dist-info with entry_points.txt) on PYTHONPATH."""
    info = tmp_path / "thirdparty_demo-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: thirdparty-demo\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(entry_points)
    (tmp_path / "thirdparty_ok.py").write_text(
        "from sandboxkit.spi import ProviderRecord, hookimpl\n"
        "@hookimpl\n"
        "def sandboxkit_providers():\n"
        "    return [ProviderRecord(name='demo', factory='thirdparty_missing:Provider',\n"
        "                           install_hint='pip install demo')]\n"
    )
    return {**os.environ, "PYTHONPATH": str(tmp_path)}


def test_broken_plugin_is_reported_and_the_others_still_work(tmp_path: Path) -> None:
    env = _fake_distribution(tmp_path, "[sandboxkit]\nbroken = no_such_module_xyz\ndemo = thirdparty_ok\n")
    proc = subprocess.run([CLI, "providers", "--json"], capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr
    rows = {r["name"]: r for r in json.loads(proc.stdout)}
    assert rows["docker"]["ok"]
    assert rows["demo"]["ok"]
    assert not rows["broken"]["ok"]
    assert "no_such_module_xyz" in rows["broken"]["error"]
    # asking for the demo provider imports its factory, which is missing: a clear error with the hint
    code = "from sandboxkit import Sandbox\nSandbox.create(provider='demo')"
    proc = subprocess.run([PY, "-c", code], capture_output=True, text=True, env=env)
    assert "PROVIDER_UNAVAILABLE" in proc.stderr
    assert "pip install demo" in proc.stderr
    # strict mode re-raises during development
    proc = subprocess.run(
        [CLI, "providers"], capture_output=True, text=True, env={**env, "SANDBOXKIT_STRICT_PLUGINS": "1"}
    )
    assert proc.returncode != 0
    assert "no_such_module_xyz" in proc.stderr
    # a plugin can be disabled
    proc = subprocess.run(
        [CLI, "providers"], capture_output=True, text=True, env={**env, "SANDBOXKIT_DISABLED_PLUGINS": "broken"}
    )
    assert "broken" not in proc.stdout
    assert "demo" in proc.stdout


class _RaisingPlugin:
    @hookimpl
    def sandboxkit_providers(self) -> Iterable[ProviderRecord]:
        raise RuntimeError("hook exploded")


class _NotAProviderPlugin:
    @hookimpl
    def sandboxkit_providers(self) -> Iterable[ProviderRecord]:
        return [ProviderRecord(name="notaprovider", factory="json:JSONDecoder"),
                ProviderRecord(name="docker", factory="json:JSONDecoder")]  # fmt: skip


def test_hook_failures_and_conflicts_are_reported_per_plugin() -> None:
    registry = Registry()
    registry.register(_RaisingPlugin(), name="raising")
    registry.register(_NotAProviderPlugin(), name="impostor")
    status = {s.name: s for s in registry.statuses()}
    assert "hook exploded" in (status["raising"].error or "")
    assert "offered by both" in (status["docker"].error or "")
    with pytest.raises(SandboxError) as info:
        registry.provider_class("notaprovider")
    assert info.value.code is ErrorCode.PROVIDER_UNAVAILABLE
    assert "not a sandboxkit Provider" in info.value.message
    assert registry.provider_class("docker").__name__ == "DockerProvider"  # the first registration wins
    registry.unregister("impostor")
    assert "notaprovider" not in {s.name for s in registry.statuses()}


def test_unknown_provider_lists_the_valid_names() -> None:
    with pytest.raises(SandboxError) as info:
        Sandbox.create(provider="nonexistent")
    assert info.value.code is ErrorCode.PROVIDER_NOT_FOUND
    assert isinstance(info.value, LookupError)
    assert "'docker'" not in info.value.message
    assert "docker" in info.value.message


def test_default_provider_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SANDBOXKIT_PROVIDER", "from-env-provider")
    with pytest.raises(SandboxError) as info:
        Sandbox.create()
    assert info.value.code is ErrorCode.PROVIDER_NOT_FOUND
    assert "from-env-provider" in info.value.message
    monkeypatch.delenv("SANDBOXKIT_PROVIDER")
    assert Sandbox(None).provider == "docker"
