"""The emulator, driven by the real modal SDK directly (the paths sandboxkit's provider does not use)."""

from __future__ import annotations

import os
import re
import sys
import time
import uuid
from collections.abc import Iterator

import modal
import modal.exception as mx
import pytest
from sandboxkit_modal.emulator import EmulatorProcess

import sandboxkit

pytestmark = pytest.mark.usefixtures("modal_env")

IMAGE = "debian:bookworm-slim"  # mapped to sandboxkit/base:bookworm by the emulator's defaults


@pytest.fixture(scope="module")
def app() -> modal.App:
    return modal.App.lookup(f"sbk-emu-{uuid.uuid4().hex[:8]}", create_if_missing=True)


@pytest.fixture(scope="module")
def image() -> modal.Image:
    return modal.Image.from_registry(IMAGE)


@pytest.fixture(scope="module")
def sb(app: modal.App, image: modal.Image) -> Iterator[modal.Sandbox]:
    sandbox = modal.Sandbox.create(app=app, image=image, timeout=300, tags={"kind": "shared"})
    yield sandbox
    sandbox.terminate()


def test_exec_output_exit_code_and_offsets(sb: modal.Sandbox) -> None:
    p = sb.exec("bash", "-c", "echo out; echo err >&2; exit 3")
    assert (p.stdout.read(), p.stderr.read(), p.wait()) == ("out\n", "err\n", 3)
    lines = list(sb.exec("bash", "-c", "for i in 1 2 3; do echo $i; done", bufsize=1).stdout)
    assert lines == ["1\n", "2\n", "3\n"]
    assert sb.exec("head", "-c", "5", "/dev/zero", text=False).stdout.read() == b"\0" * 5


def test_interactive_stdin_reaches_a_running_command(sb: modal.Sandbox) -> None:
    p = sb.exec("python3", "-u", "-c", "import sys\nfor line in sys.stdin: print(line.strip().upper())")
    p.stdin.write(b"one\n")
    p.stdin.drain()
    reader = iter(p.stdout)
    assert next(reader) == "ONE\n"  # answered before stdin was closed
    p.stdin.write(b"two\n")
    p.stdin.write_eof()
    p.stdin.drain()
    assert p.stdout.read() == "TWO\n"
    assert p.wait() == 0


def test_exec_timeout_reports_minus_one_as_modal_does(sb: modal.Sandbox) -> None:
    started = time.monotonic()
    p = sb.exec("sleep", "20", timeout=1)
    assert p.wait() == -1
    assert time.monotonic() - started < 10
    assert "sleep 20" not in sb.exec("ps", "-eo", "args").stdout.read()


def test_exec_env_secrets_and_workdir(sb: modal.Sandbox) -> None:
    p = sb.exec(
        "sh", "-c", 'echo "$A $B $PWD"', env={"A": "1"}, secrets=[modal.Secret.from_dict({"B": "2"})], workdir="/etc"
    )
    assert p.stdout.read() == "1 2 /etc\n"


def test_filesystem_api(sb: modal.Sandbox) -> None:
    fs = sb.filesystem
    fs.write_text("hello", "/tmp/fs/a/b.txt")
    assert fs.read_text("/tmp/fs/a/b.txt") == "hello"
    fs.write_bytes(b"\x00\xff", "/tmp/fs/bin")
    sb.exec("ln", "-s", "/tmp/fs/bin", "/tmp/fs/link").wait()
    entries = {e.name: e for e in fs.list_files("/tmp/fs")}
    assert sorted(entries) == ["a", "bin", "link"]
    assert entries["a"].is_dir()
    assert entries["bin"].size == 2
    assert entries["link"].is_symlink()
    assert entries["link"].symlink_target == "/tmp/fs/bin"
    info = fs.stat("/tmp/fs/a/b.txt")
    assert (info.path, info.size, info.owner, info.permissions) == ("/tmp/fs/a/b.txt", 5, "root", "-rw-r--r--")
    fs.make_directory("/tmp/fs/x/y/z")
    with pytest.raises(mx.SandboxFilesystemPathAlreadyExistsError):
        fs.make_directory("/tmp/fs/x", create_parents=False)
    with pytest.raises(mx.SandboxFilesystemDirectoryNotEmptyError):
        fs.remove("/tmp/fs/x")
    fs.remove("/tmp/fs/x", recursive=True)
    with pytest.raises(mx.SandboxFilesystemNotFoundError):
        fs.stat("/tmp/fs/x")
    with pytest.raises(mx.SandboxFilesystemNotFoundError):
        fs.read_bytes("/tmp/fs/none")
    with pytest.raises(mx.SandboxFilesystemIsADirectoryError):
        fs.read_bytes("/tmp/fs")
    with pytest.raises(mx.SandboxFilesystemIsADirectoryError):
        fs.write_text("x", "/tmp/fs/a")
    with pytest.raises(mx.SandboxFilesystemNotADirectoryError):
        fs.list_files("/tmp/fs/bin")


def test_tags_can_be_read_listed_and_replaced(sb: modal.Sandbox, app: modal.App) -> None:
    assert sb.get_tags() == {"kind": "shared"}
    assert [s.object_id for s in modal.Sandbox.list(app_id=app.app_id, tags={"kind": "shared"})] == [sb.object_id]
    sb.set_tags({"kind": "renamed"})
    assert list(modal.Sandbox.list(app_id=app.app_id, tags={"kind": "shared"})) == []
    sb.set_tags({"kind": "shared"})


def test_v1_entrypoint_stdio_and_stdin(app: modal.App, image: modal.Image, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODAL_SANDBOX_V2", "0")
    sb = modal.Sandbox.create("bash", "-c", "read x; echo got $x; echo e >&2; exit 7", app=app, image=image)
    assert len(sb.object_id) == 25  # V1 id: sb- and 22 base62 characters
    sb.stdin.write(b"abc\n")
    sb.stdin.write_eof()
    sb.stdin.drain()
    sb.wait(raise_on_termination=False)
    assert (sb.returncode, sb.stdout.read(), sb.stderr.read()) == (7, "got abc\n", "e\n")
    assert modal.Sandbox.from_id(sb.object_id).returncode == 7


def test_v2_entrypoint_stdio(app: modal.App, image: modal.Image) -> None:
    sb = modal.Sandbox.create("sh", "-c", "echo hello; echo oops >&2", app=app, image=image)
    sb.wait()
    assert (sb.returncode, sb.stdout.read(), sb.stderr.read()) == (0, "hello\n", "oops\n")


def test_lifetime_and_idle_timeouts(app: modal.App, image: modal.Image) -> None:
    short = modal.Sandbox.create(app=app, image=image, timeout=2)
    idle = modal.Sandbox.create(app=app, image=image, idle_timeout=2, timeout=120)
    assert idle.exec("sleep", "3").wait() == 0  # busy past the idle timeout: still alive
    assert idle.poll() is None
    with pytest.raises(mx.SandboxTimeoutError):
        short.wait()
    assert short.returncode == 124
    deadline = time.monotonic() + 10
    while idle.poll() is None and time.monotonic() < deadline:
        time.sleep(0.5)
    assert idle.returncode == 124  # ended by its idle timeout


def test_terminated_sandboxes_refuse_work(app: modal.App, image: modal.Image) -> None:
    sb = modal.Sandbox.create(app=app, image=image, name="doomed")
    assert modal.Sandbox.from_name(app.name or "", "doomed").object_id == sb.object_id
    assert sb.terminate(wait=True) == 137
    with pytest.raises(mx.SandboxTerminatedError):
        sb.wait()
    with pytest.raises(mx.NotFoundError):
        modal.Sandbox.from_name(app.name or "", "doomed")
    with pytest.raises(mx.NotFoundError):
        sb.exec("true")


def test_what_is_not_emulated_answers_clearly(sb: modal.Sandbox, app: modal.App, image: modal.Image) -> None:
    with pytest.raises(mx.UnimplementedError):
        sb.snapshot_directory("/tmp")
    with pytest.raises(mx.ImageBuildError, match="builds no images offline"):
        modal.Sandbox.create(app=app, image=modal.Image.debian_slim().pip_install("requests"))
    with pytest.raises(mx.InvalidError, match="GPU type"):
        modal.Sandbox.create(app=app, image=image, gpu="NOPE-9000")


def test_default_image_is_modals_debian_slim(app: modal.App) -> None:
    sb = modal.Sandbox.create(app=app)  # Image.debian_slim(), stood in for by the local Python image
    try:
        assert sb.exec("python", "-c", "import json; print(json.dumps([1]))").stdout.read() == "[1]\n"
    finally:
        sb.terminate()


def test_cli_command_prints_export_lines_and_checks_tokens(monkeypatch: pytest.MonkeyPatch) -> None:
    command = (sys.executable, "-m", "sandboxkit.cli", "modal-emulator")
    with EmulatorProcess("--token-id", "ak-x", command=command) as emulator:
        assert emulator.env["MODAL_SERVER_URL"].startswith("http://127.0.0.1:")
        assert emulator.env["MODAL_TOKEN_ID"] == "ak-x"
        monkeypatch.setenv("MODAL_SERVER_URL", emulator.env["MODAL_SERVER_URL"])
        good = modal.Client.from_credentials("ak-x", emulator.env["MODAL_TOKEN_SECRET"])
        good.hello()
        bad = modal.Client.from_credentials("ak-x", "as-wrong")
        with pytest.raises(mx.AuthError):
            bad.hello()
        good.close()
        bad.close()
    assert emulator.proc.returncode == 0


def test_volume_objects_map_to_docker_named_volumes(app: modal.App, image: modal.Image) -> None:
    name = f"sbk-emu-vol-{uuid.uuid4().hex[:8]}"
    modal.Volume.objects.create(name)
    try:
        with pytest.raises(mx.AlreadyExistsError):
            modal.Volume.objects.create(name)
        assert name in [v.name for v in modal.Volume.objects.list()]
        volume = modal.Volume.from_name(name)
        first = modal.Sandbox.create(app=app, image=image, volumes={"/v": volume})
        first.exec("sh", "-c", "echo kept > /v/f").wait()
        first.terminate(wait=True)
        second = modal.Sandbox.create(app=app, image=image, volumes={"/w": volume})
        assert second.exec("cat", "/w/f").stdout.read() == "kept\n"
        second.terminate(wait=True)
    finally:
        modal.Volume.objects.delete(name)
    assert name not in [v.name for v in modal.Volume.objects.list()]
    with pytest.raises(mx.NotFoundError):
        modal.Volume.from_name(name).hydrate()


def test_tunnels_and_filesystem_snapshots_through_the_sdk(app: modal.App, image: modal.Image) -> None:
    """Tunnels are ports published on 127.0.0.1 (plain TCP); snapshot_filesystem gives an Image to start from."""
    sb = modal.Sandbox.create(app=app, image=image, encrypted_ports=[8000], unencrypted_ports=[9000])
    started: list[modal.Sandbox] = []
    snap_ids: list[str] = []
    try:
        tunnels = sb.tunnels()
        assert set(tunnels) == {8000, 9000}
        assert tunnels[8000].host == "127.0.0.1" and tunnels[8000].port > 0
        assert tunnels[9000].tcp_socket == ("127.0.0.1", tunnels[9000].port)
        with pytest.raises(mx.InvalidError):
            tunnels[8000].tcp_socket  # noqa: B018 - an encrypted port has no plain TCP socket, as on Modal
        sb.exec("sh", "-c", "echo kept > /tmp/kept").wait()
        snap = sb.snapshot_filesystem()
        snap_ids.append(snap.object_id.removeprefix("im-"))
        assert snap.object_id.startswith("im-snap-")
        again = modal.Image.from_id(snap.object_id)
        started.append(modal.Sandbox.create(app=app, image=again))
        assert started[0].exec("cat", "/tmp/kept").stdout.read() == "kept\n"
    finally:
        for box in [sb, *started]:
            box.terminate()
        for snapshot in sandboxkit.snapshots("docker", labels=_session_labels()):  # the emulator's Docker snapshots
            if snapshot.id in snap_ids:
                snapshot.delete()


def test_exec_with_a_pty(sb: modal.Sandbox) -> None:
    """exec(pty=True): a terminal's stream on stdout, stdin through its line discipline, the exit code."""
    process = sb.exec("sh", "-c", "stty size; read line; echo got-$line; exit 3", pty=True, text=False)
    process.stdin.write(b"hello\n")
    process.stdin.drain()
    assert process.wait() == 3
    out = process.stdout.read()
    assert b"got-hello\r\n" in out, out
    assert re.search(rb"^\d+ \d+\r\n", out), out
    assert process.stderr.read() == b""


def _session_labels() -> dict[str, str]:
    """This test session's bookkeeping labels, as ``$SANDBOXKIT_LABELS`` (``k=v,...``) gives them."""
    pairs = (p.partition("=") for p in os.environ.get("SANDBOXKIT_LABELS", "").split(",") if "=" in p)
    return {k: v for k, _, v in pairs}
