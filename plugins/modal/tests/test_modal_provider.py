"""Provider "modal" through sandboxkit's public API, the real modal SDK, and the emulator (Docker underneath)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import modal
import pytest
from sandboxkit_modal.provider import ModalOptions

from sandboxkit import ErrorCode, Sandbox, SandboxError, SandboxState

pytestmark = pytest.mark.usefixtures("modal_env")


def _v1_shaped(sandbox_id: str) -> bool:
    """Modal routes ``sb-`` + 22 base62 characters to its V1 RPCs, anything else to V2."""
    return sandbox_id.startswith("sb-") and len(sandbox_id) == 25 and sandbox_id[3:].isalnum()


@pytest.fixture(scope="module")
def app() -> str:
    return f"sbk-test-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="module")
def sb(app: str) -> Iterator[Sandbox]:
    with Sandbox.create(
        provider="modal",
        app=app,
        name="main",
        image="python:3.12-slim",
        tags={"team": "core"},
        env={"GREETING": "hello"},
        workdir="/srv",
        initial_files={"/srv/app/main.py": 'print("hi from main")', "/srv/blob": b"\x00\x01\xff"},
        cpu=1,
        memory_mib=512,
        timeout=600,
    ) as sandbox:
        yield sandbox


def test_native_objects_are_modals(sb: Sandbox) -> None:
    assert isinstance(sb.instance, modal.Sandbox)
    assert isinstance(sb.client, modal.Client)
    assert sb.instance.object_id == sb.id
    assert (sb.provider, sb.name) == ("modal", "main")


def test_execute_output_env_workdir_and_initial_files(sb: Sandbox) -> None:
    r = sb.execute('echo "$GREETING from $PWD"; echo oops >&2; python app/main.py; exit 3')
    assert r.exit_code == 3
    assert r.stdout == "hello from /srv\nhi from main\n"
    assert r.stderr == "oops\n"
    assert sorted(r.output.splitlines()) == sorted(["hello from /srv", "hi from main", "oops"])
    assert sb.read_file("/srv/blob") == b"\x00\x01\xff"


def test_argv_cwd_env_and_binary_stdin(sb: Sandbox) -> None:
    r = sb.execute(["sh", "-c", 'printf "%s|" "$1" "$X" "$PWD"', "sh", "a b'c"], cwd="/tmp", env={"X": "y"})
    assert r.stdout == "a b'c|y|/tmp|"
    data = bytes(range(256)) * 4096  # 1 MiB, every byte value
    r = sb.execute(["sh", "-c", "cat | sha256sum"], stdin=data)
    import hashlib

    assert r.stdout.split()[0] == hashlib.sha256(data).hexdigest()
    assert sb.execute("cat", stdin="").stdout == ""  # no stdin -> EOF, not a hang
    assert sb.execute("cat").exit_code == 0


def test_files_round_trip_and_errors(sb: Sandbox) -> None:
    sb.write_file("/tmp/deep/er/x.txt", "text")
    assert sb.read_file("/tmp/deep/er/x.txt") == b"text"
    big = bytes(range(256)) * (8 << 12)  # 8 MiB
    sb.write_file("/tmp/big.bin", big)
    assert sb.read_file("/tmp/big.bin") == big
    with pytest.raises(SandboxError) as info:
        sb.read_file("/tmp/missing")
    assert info.value.code == ErrorCode.FILE_OPERATION_FAILED
    results = sb.download_files(["/tmp/deep/er/x.txt", "/tmp/missing", "/tmp"])
    assert [(r.content, r.error) for r in results] == [
        (b"text", None),
        (None, "file_not_found"),
        (None, "is_directory"),
    ]
    up = sb.upload_files([("/tmp/u1", b"1"), ("/tmp", b"x"), ("relative", b"x")])
    assert [r.error for r in up] == [None, "is_directory", "invalid_path"]


def test_from_id_and_from_name_reconnect_v2(sb: Sandbox, app: str) -> None:
    assert not _v1_shaped(sb.id)  # a V2 sandbox
    again = Sandbox.from_id(sb.id, provider="modal")
    assert (again.name, again.app) == ("main", app)
    assert again.execute("cat /srv/blob").stdout_bytes == b"\x00\x01\xff"
    by_name = Sandbox.from_name(app, "main", provider="modal")
    assert by_name.id == sb.id
    with pytest.raises(SandboxError) as info:
        Sandbox.from_name(app, "nobody", provider="modal")
    assert info.value.code == ErrorCode.SANDBOX_NOT_FOUND


def test_list_filters_by_app_tags_and_labels(sb: Sandbox, app: str, session_label: str) -> None:
    found = Sandbox.list(provider="modal", app=app, tags={"team": "core"})
    assert [(i.id, i.name, i.app, dict(i.tags), i.state) for i in found] == [
        (sb.id, "main", app, {"team": "core"}, SandboxState.RUNNING)
    ]
    assert found[0].created_at is not None
    assert Sandbox.list(provider="modal", app=app, tags={"team": "other"}) == []
    assert Sandbox.list(provider="modal", app=f"{app}-none") == []
    key, value = session_label.removeprefix("sandboxkit.label.").split("=")
    assert sb.id in [i.id for i in Sandbox.list(provider="modal", labels={key: value})]


def test_reserved_tags_are_refused(app: str) -> None:
    with pytest.raises(SandboxError) as info:
        Sandbox.create(provider="modal", app=app, tags={"sandboxkit.name": "x"})
    assert info.value.code == ErrorCode.INVALID_ARGUMENT


def test_provider_options_are_validated(app: str) -> None:
    with pytest.raises(SandboxError) as info:
        Sandbox.create(provider="modal", app=app, provider_options={"cpu": (2, 1)})
    assert info.value.code == ErrorCode.INVALID_ARGUMENT
    with pytest.raises(SandboxError) as info:
        Sandbox.create(provider="modal", app=app, provider_options={"region": "eu", "nope": 1})
    assert info.value.code == ErrorCode.INVALID_ARGUMENT
    assert "nope" in info.value.message
    with pytest.raises(SandboxError) as info:  # modal's own check, surfaced with its reason
        Sandbox.create(provider="modal", app=app, block_network=True, provider_options=ModalOptions(h2_ports=[80]))
    assert info.value.code == ErrorCode.INVALID_ARGUMENT
    assert "block_network" in info.value.message


def test_missing_image_fails_creation_with_a_reason(app: str) -> None:
    with pytest.raises(SandboxError) as info:
        Sandbox.create(provider="modal", app=app, image="registry.example/none/such:1")
    assert info.value.code == ErrorCode.SANDBOX_CREATION_FAILED
    assert "registry.example/none/such:1" in info.value.message


def test_v1_sandboxes_reconnect_by_id(app: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODAL_SANDBOX_V2", "0")  # what gpu= does implicitly: Modal's V1 RPCs
    with Sandbox.create(provider="modal", app=app, name="v1", image="busybox:latest") as sb:
        assert _v1_shaped(sb.id)
        monkeypatch.delenv("MODAL_SANDBOX_V2")
        again = Sandbox.from_id(sb.id, provider="modal")
        assert (again.name, again.execute("echo v1").stdout) == ("v1", "v1\n")
        assert Sandbox.from_name(app, "v1", provider="modal").id == sb.id


def test_argv_past_modals_64k_limit_arrives_whole(sb: Sandbox) -> None:
    args = [chr(ord("a") + i) * 65536 for i in range(4)] + ['it\'s "quoted" $HOME `x`']
    r = sb.execute(["sh", "-c", 'n=0; for a in "$@"; do n=$((n + ${#a})); done; echo $n "$5"', "sh", *args])
    assert r.stdout == f"{4 * 65536 + len(args[-1])} {args[-1]}\n"
    assert ".sandboxkit-argv" not in sb.execute("ls -a /tmp").stdout  # the one-shot script removed itself
