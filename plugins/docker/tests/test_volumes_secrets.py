"""Named volumes persist across sandboxes; secrets reach commands and nothing else."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sandboxkit import ErrorCode, Sandbox, SandboxError, volumes
from sandboxkit.secrets import create_secret, delete_secret

pytestmark = pytest.mark.usefixtures("docker_engine")
VALUE = "tok-" + uuid.uuid4().hex  # unique, so finding it anywhere is a real leak


@pytest.fixture
def volume() -> Iterator[str]:
    """A fresh named volume with this session's label (the root conftest reaps it if a test fails)."""
    name = f"sbk-test-{uuid.uuid4().hex[:10]}"
    volumes.create(name, "docker")
    yield name
    try:
        volumes.delete(name, "docker")
    except SandboxError:
        pass


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    create_secret("api-keys", {"API_TOKEN": VALUE, "SHARED": "from-secret"})
    return tmp_path


def _session_containers(docker_engine: Any, session_label: str) -> set[str]:
    return {c.id for c in docker_engine.containers.list(all=True, filters={"label": session_label})}


def test_a_named_volume_written_in_one_sandbox_is_read_in_the_next(volume: str, session_label: str) -> None:
    with Sandbox.create(volumes={"/data": volume}) as first:
        first.execute("echo persisted > /data/note", check=True)
    with Sandbox.create(volumes={"/mnt/again": volume}) as second:
        assert second.read_file("/mnt/again/note") == b"persisted\n"
    listed = volumes.list("docker")
    assert volume in [v.name for v in listed if v.managed]


def test_a_missing_volume_is_volume_error_and_leaves_nothing(docker_engine: Any, session_label: str) -> None:
    before = _session_containers(docker_engine, session_label)
    with pytest.raises(SandboxError) as err:
        Sandbox.create(volumes={"/data": f"no-such-{uuid.uuid4().hex[:8]}"})
    assert err.value.code == ErrorCode.VOLUME_ERROR
    assert "sandboxkit volume create" in err.value.message
    assert _session_containers(docker_engine, session_label) == before


def test_one_volume_at_two_paths_is_refused(volume: str) -> None:
    with pytest.raises(SandboxError) as err:
        Sandbox.create(volumes={"/a": volume, "/b": volume})
    assert err.value.code == ErrorCode.INVALID_ARGUMENT


def test_a_mounted_volume_cannot_be_deleted(volume: str) -> None:
    with Sandbox.create(volumes={"/data": volume}):
        with pytest.raises(SandboxError) as err:
            volumes.delete(volume, "docker")
        assert err.value.code == ErrorCode.VOLUME_ERROR
        assert "in use" in err.value.message
    volumes.delete(volume, "docker")
    with pytest.raises(SandboxError) as gone:
        volumes.delete(volume, "docker")
    assert gone.value.code == ErrorCode.VOLUME_ERROR


def test_a_secret_reaches_commands_and_appears_nowhere_else(store: Path, docker_engine: Any) -> None:
    with Sandbox.create(secrets=["api-keys"], env={"SHARED": "from-env"}) as sb:
        assert sb.execute("printenv API_TOKEN").stdout.strip() == VALUE
        assert sb.execute("printenv SHARED").stdout.strip() == "from-env"  # env= wins, as in Modal
        assert sb.execute(["sh", "-c", "echo $API_TOKEN"], env={"API_TOKEN": "per-call"}).stdout.strip() == "per-call"
        inspect = json.dumps(docker_engine.api.inspect_container(sb.id))
        assert VALUE not in inspect
        assert "api-keys" in inspect  # the name is recorded, so a reconnecting client finds the values
        assert VALUE.encode() not in docker_engine.containers.get(sb.id).logs()
        assert VALUE not in repr(sb)
        assert VALUE not in repr(sb.handle)
        assert VALUE not in repr(sb.aio)
        with pytest.raises(SandboxError) as err:
            sb.execute("exit 4", check=True)
        assert VALUE not in str(err.value)
        assert VALUE not in repr(err.value)


def test_a_reconnected_handle_injects_the_same_secrets(store: Path) -> None:
    with Sandbox.create(secrets=["api-keys"]) as sb:
        again = Sandbox.from_id(sb.id)
        assert again.execute("printenv API_TOKEN").stdout.strip() == VALUE
        delete_secret("api-keys")
        gone = Sandbox.from_id(sb.id)
        with pytest.raises(SandboxError) as err:
            gone.execute("true")
        assert err.value.code == ErrorCode.INVALID_ARGUMENT
        assert "sandboxkit secret create api-keys" in err.value.message


def test_a_missing_secret_fails_before_any_container(store: Path, docker_engine: Any, session_label: str) -> None:
    before = _session_containers(docker_engine, session_label)
    with pytest.raises(SandboxError) as err:
        Sandbox.create(secrets=["api-keys", "not-stored"])
    assert err.value.code == ErrorCode.SANDBOX_CREATION_FAILED
    assert "sandboxkit secret create not-stored" in err.value.message
    assert _session_containers(docker_engine, session_label) == before
