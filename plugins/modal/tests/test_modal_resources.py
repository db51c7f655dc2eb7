"""GPUs (simulated), volumes and secrets through provider "modal" and the emulator."""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator

import pytest

from sandboxkit import ErrorCode, Sandbox, SandboxError

pytestmark = pytest.mark.usefixtures("modal_env")
APP = "sbk-resources"


def test_gpu_sandbox_takes_the_v1_path_and_sees_its_gpu() -> None:
    with Sandbox.create(provider="modal", app=APP, gpu="T4") as sb:
        assert len(sb.id) == 25
        assert sb.id[3:].isalnum()  # Modal's V1 id shape
        listed = sb.execute("nvidia-smi -L").stdout.splitlines()
        assert len(listed) == 1, listed
        assert "T4" in listed[0], listed
        again = Sandbox.from_id(sb.id, provider="modal")
        assert "T4" in again.execute("nvidia-smi -L").stdout


def test_several_gpus() -> None:
    with Sandbox.create(provider="modal", app=APP, gpu="A100:2") as sb:
        listed = sb.execute("nvidia-smi -L").stdout.splitlines()
        assert len(listed) == 2
        assert all("A100" in line for line in listed)


@pytest.fixture
def volume() -> Iterator[str]:
    name = f"sbk-vol-{uuid.uuid4().hex[:8]}"
    run = [sys.executable, "-m", "sandboxkit.cli", "volume"]
    subprocess.run([*run, "create", "--provider", "modal", name], check=True, capture_output=True)
    yield name
    subprocess.run([*run, "rm", "--provider", "modal", name], check=True, capture_output=True)


def test_a_named_volume_is_shared_by_two_sandboxes(volume: str) -> None:
    with (
        Sandbox.create(provider="modal", app=APP, volumes={"/data": volume}) as writer,
        Sandbox.create(provider="modal", app=APP, volumes={"/mnt/shared": volume}, image="busybox:latest") as reader,
    ):
        writer.execute("echo written-by-one > /data/note.txt", check=True)
        assert reader.execute("cat /mnt/shared/note.txt").stdout == "written-by-one\n"
        reader.write_file("/mnt/shared/back.bin", b"\x00back")
        assert writer.read_file("/data/back.bin") == b"\x00back"
    with Sandbox.create(provider="modal", app=APP, volumes={"/data": volume}) as later:
        assert later.execute("cat /data/note.txt").stdout == "written-by-one\n"  # the data outlived both


def test_volume_listing_through_the_provider(volume: str) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "sandboxkit.cli", "volume", "ls", "--provider", "modal"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    assert volume in out


def test_a_missing_volume_is_volume_error() -> None:
    with pytest.raises(SandboxError) as info:
        Sandbox.create(provider="modal", app=APP, volumes={"/data": "sbk-no-such-volume"})
    assert info.value.code == ErrorCode.VOLUME_ERROR
    assert "sbk-no-such-volume" in info.value.message
    assert "volume create" in info.value.message


def test_a_secret_reaches_commands_and_stays_out_of_messages(emulator_secret: Callable[[dict[str, str]], str]) -> None:
    name = emulator_secret({"API_TOKEN": "s3cr3t-value", "OTHER": "x y"})
    with Sandbox.create(provider="modal", app=APP, secrets=[name]) as sb:
        assert sb.execute('printf "%s|%s" "$API_TOKEN" "$OTHER"').stdout == "s3cr3t-value|x y"
        assert "s3cr3t-value" not in repr(sb)
        assert "s3cr3t-value" not in str(sb.instance)
    with pytest.raises(SandboxError) as info:
        Sandbox.create(provider="modal", app=APP, secrets=["sbk-no-such-secret"])
    assert info.value.code == ErrorCode.SANDBOX_CREATION_FAILED
    assert "sbk-no-such-secret" in info.value.message
    assert "secret create" in info.value.message
