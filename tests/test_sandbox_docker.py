"""Every public call of the facade against real Docker containers, error paths included."""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable, Iterator
from typing import Any

import docker
import pytest

import sandboxkit
from sandboxkit import (
    AsyncSandbox,
    ErrorCode,
    ExecResult,
    FileDownloadResult,
    FileUploadResult,
    Sandbox,
    SandboxError,
    SandboxState,
    create_sandbox_factory,
    create_sandbox_factory_from_sandbox,
)

pytestmark = pytest.mark.usefixtures("docker_engine")


@pytest.fixture(scope="module")
def sb(docker_engine: Any) -> Iterator[Sandbox]:
    with Sandbox.create(
        workdir="/app",
        env={"GREETING": "hello"},
        initial_files={"/app/main.py": 'print("hi from main")', "/app/blob.bin": b"\x00\x01\xff"},
        timeout=600,
    ) as sandbox:
        yield sandbox


def _processes(sandbox: Sandbox) -> str:
    return sandbox.execute(["ps", "-eo", "args"]).stdout


# ---------------------------------------------------------------- lifecycle
def test_create_runs_a_real_container(sb: Sandbox, docker_engine: docker.DockerClient) -> None:
    container = docker_engine.containers.get(sb.id)
    assert container.status == "running"
    assert container.labels["sandboxkit.managed"] == "1"
    assert sb.provider == "docker"
    assert sb.app == "sandboxkit"
    assert sb.name is None
    assert sb.instance.id == sb.id
    assert isinstance(sb.client, docker.DockerClient)
    assert sb.id in repr(sb)
    assert "hello" not in repr(sb)


def test_initial_files_workdir_and_env(sb: Sandbox) -> None:
    r = sb.execute("python main.py && echo $GREETING && pwd")
    assert r.exit_code == 0
    assert r.stdout == "hi from main\nhello\n/app\n"
    assert sb.read_file("/app/blob.bin") == b"\x00\x01\xff"


def test_two_step_form() -> None:
    sandbox = Sandbox(timeout=60)
    with pytest.raises(SandboxError) as info:
        sandbox.execute("true")
    assert info.value.code is ErrorCode.NOT_INITIALIZED
    sandbox.initialize()
    try:
        with pytest.raises(SandboxError) as info:
            sandbox.initialize()
        assert info.value.code is ErrorCode.ALREADY_INITIALIZED
        assert sandbox.execute("echo ok").stdout == "ok\n"
    finally:
        sandbox.close()


def test_close_is_idempotent_and_later_calls_say_not_found(docker_engine: docker.DockerClient) -> None:
    sandbox = Sandbox.create(timeout=60)
    sandbox_id = sandbox.id
    sandbox.close()
    sandbox.close()
    assert not docker_engine.api.containers(all=True, filters={"id": sandbox_id})
    for call in (lambda: sandbox.execute("true"), lambda: sandbox.read_file("/etc/hostname"),
                 lambda: sandbox.write_file("/tmp/x", "y")):  # fmt: skip
        with pytest.raises(SandboxError) as info:
            call()
        assert info.value.code is ErrorCode.SANDBOX_NOT_FOUND
    reconnects: list[Callable[[], Sandbox]] = [lambda: Sandbox.from_id(sandbox_id), lambda: Sandbox.from_id("0" * 64)]
    for reconnect in reconnects:
        with pytest.raises(SandboxError) as info:
            reconnect()
        assert info.value.code is ErrorCode.SANDBOX_NOT_FOUND


def test_context_manager_closes_on_error(docker_engine: docker.DockerClient) -> None:
    with pytest.raises(RuntimeError), Sandbox.create(timeout=60) as sandbox:
        sandbox_id = sandbox.id
        raise RuntimeError("user code failed")
    assert not docker_engine.api.containers(all=True, filters={"id": sandbox_id})


def test_names_reconnect_and_list() -> None:
    tag = os.urandom(4).hex()
    with Sandbox.create(name=f"named-{tag}", app="sbk-tests", tags={"run": tag}, timeout=60) as named:
        again = Sandbox.from_name("sbk-tests", f"named-{tag}")
        assert again.id == named.id
        assert again.name == f"named-{tag}"
        assert again.app == "sbk-tests"
        assert Sandbox.from_id(named.id).execute("echo same").stdout == "same\n"
        with pytest.raises(SandboxError) as info:
            Sandbox.create(name=f"named-{tag}", app="sbk-tests", timeout=60)
        assert info.value.code is ErrorCode.ALREADY_EXISTS
        with Sandbox.create(name=f"named-{tag}", app="other-app", timeout=60) as other:  # unique per app only
            assert other.id != named.id
        listed = Sandbox.list(tags={"run": tag})
        assert [(i.id, i.name, i.app, dict(i.tags), i.state, i.provider) for i in listed] == [
            (named.id, f"named-{tag}", "sbk-tests", {"run": tag}, SandboxState.RUNNING, "docker")
        ]
        assert listed[0].created_at is not None
        assert {i.id for i in Sandbox.list(app="sbk-tests")} >= {named.id}
    with pytest.raises(SandboxError) as info:
        Sandbox.from_name("sbk-tests", f"named-{tag}")
    assert info.value.code is ErrorCode.SANDBOX_NOT_FOUND
    assert Sandbox.list(tags={"run": tag}) == []


def test_missing_image_fails_cleanly(docker_engine: docker.DockerClient) -> None:
    def ids() -> set[str]:
        return {c["Id"] for c in docker_engine.api.containers(all=True) if "/sandboxkit-warden" not in c["Names"]}

    before = ids()  # others may end meanwhile (reaped sandboxes); none may appear
    with pytest.raises(SandboxError) as info:
        Sandbox.create(image="sandboxkit/does-not-exist:never", timeout=60)
    assert info.value.code is ErrorCode.SANDBOX_CREATION_FAILED
    assert "does-not-exist" in info.value.message
    assert "docker load" in info.value.message
    assert ids() <= before, "a failed create left a container behind"


def test_invalid_options_fail_before_docker_is_asked(docker_engine: docker.DockerClient) -> None:
    with pytest.raises(SandboxError) as info:
        Sandbox.create(timeout=0, workdir="relative")
    assert info.value.code is ErrorCode.INVALID_ARGUMENT
    assert "timeout" in info.value.message
    assert "workdir" in info.value.message


def test_lifetime_is_enforced_by_the_container_itself(docker_engine: docker.DockerClient) -> None:
    sandbox = Sandbox.create(timeout=2)
    sandbox_id = sandbox.id
    deadline = time.monotonic() + 60  # the container ends itself at 2 s; a loaded machine may take longer
    while docker_engine.api.containers(filters={"id": sandbox_id}) and time.monotonic() < deadline:
        time.sleep(0.25)
    assert not docker_engine.api.containers(filters={"id": sandbox_id}), "the container outlived its lifetime"
    with pytest.raises(SandboxError) as info:
        sandbox.execute("true")
    assert info.value.code is ErrorCode.SANDBOX_NOT_FOUND
    sandbox.close()


# ---------------------------------------------------------------- execute
def test_exit_codes_are_results(sb: Sandbox) -> None:
    assert sb.execute("exit 42").exit_code == 42
    assert sb.execute(["false"]).exit_code == 1
    assert sb.execute("nosuchcommand").exit_code == 127
    with pytest.raises(SandboxError) as info:
        sb.execute("echo out; echo err >&2; exit 3", check=True)
    assert info.value.code is ErrorCode.COMMAND_FAILED
    result = info.value.result
    assert result is not None
    assert result.exit_code == 3
    assert result.stdout == "out\n"
    assert result.stderr == "err\n"


def test_output_streams_and_order(sb: Sandbox) -> None:
    r = sb.execute("echo one; sleep 0.1; echo two >&2; sleep 0.1; echo three")
    assert (r.stdout, r.stderr, r.output) == ("one\nthree\n", "two\n", "one\ntwo\nthree\n")
    assert not r.truncated
    assert r.ok


def test_argv_is_not_shell_parsed(sb: Sandbox) -> None:
    tricky = 'it\'s a "quoted" $HOME; `uname` && echo no'
    assert sb.execute(["printf", "%s", tricky]).stdout == tricky
    assert sb.execute("printf '%s' \"$GREETING world\"").stdout == "hello world"


def test_per_call_env_cwd_user(sb: Sandbox) -> None:
    r = sb.execute("echo $A $GREETING; pwd; id -u", env={"A": "1", "GREETING": "override"}, cwd="/tmp", user="nobody")
    assert r.stdout == "1 override\n/tmp\n65534\n"
    with pytest.raises(SandboxError) as info:
        sb.execute("true", cwd="tmp")
    assert info.value.code is ErrorCode.INVALID_ARGUMENT
    with pytest.raises(SandboxError) as info:
        sb.execute("true", env={"BAD KEY": "x"})
    assert info.value.code is ErrorCode.INVALID_ARGUMENT
    for bad in ("", [], ["ok", 3]):
        with pytest.raises(SandboxError) as info:
            sb.execute(bad)  # type: ignore[arg-type]
        assert info.value.code is ErrorCode.INVALID_ARGUMENT


def test_stdin_exact_bytes_of_any_size(sb: Sandbox) -> None:
    data = os.urandom(8 * 1024 * 1024) + b"\x00tail"
    r = sb.execute(["md5sum"], stdin=data)
    assert r.stdout.split()[0] == hashlib.md5(data).hexdigest()
    assert sb.execute("cat", stdin="héllo\n").stdout == "héllo\n"
    assert sb.execute("wc -c", stdin=b"").stdout.strip() == "0"


def test_timeout_kills_the_whole_process_tree(sb: Sandbox) -> None:
    started = time.monotonic()
    with pytest.raises(SandboxError) as info:
        sb.execute("echo started; sleep 300 & setsid sleep 301 & sleep 302", timeout=1)
    elapsed = time.monotonic() - started
    err = info.value
    assert err.code is ErrorCode.COMMAND_TIMEOUT
    assert isinstance(err, TimeoutError)
    assert err.result is not None
    assert err.result.stdout == "started\n"
    assert elapsed < 8, elapsed
    survivors = [p for p in _processes(sb).splitlines() if "sleep 30" in p]
    assert survivors == []


def test_non_utf8_output_is_decoded_with_replacement_and_kept_raw(sb: Sandbox) -> None:
    r = sb.execute("printf '\\377\\376abc\\200'")
    assert r.stdout_bytes == b"\xff\xfeabc\x80"
    assert r.stdout == "\ufffd\ufffdabc\ufffd"


def test_large_output_is_capped_without_hanging(sb: Sandbox) -> None:
    started = time.monotonic()
    r = sb.execute("head -c 20971520 /dev/zero | tr '\\0' a; echo done >&2")
    assert r.exit_code == 0
    assert r.truncated
    assert len(r.output_bytes) == sandboxkit._collect.DEFAULT_MAX_OUTPUT
    assert set(r.stdout_bytes) == {ord("a")}
    assert time.monotonic() - started < 60
    small = sb.execute("head -c 1000 /dev/zero", max_output=100)
    assert small.truncated
    assert len(small.stdout_bytes) == 100


def test_stream_delivers_output_live(sb: Sandbox) -> None:
    stamps: list[tuple[float, str]] = []
    stream = sb.stream("for i in 1 2 3; do echo line$i; sleep 0.3; done; exit 5")
    for chunk in stream:
        stamps.append((time.monotonic(), str(chunk)))
    assert "".join(text for _, text in stamps) == "line1\nline2\nline3\n"
    assert stamps[-1][0] - stamps[0][0] > 0.4  # chunks arrived over time, not at the end
    assert stream.result is not None
    assert stream.result.exit_code == 5


def test_stream_stopped_early_kills_the_command(sb: Sandbox) -> None:
    stream = sb.stream("echo first; sleep 0.2; echo second; exec sleep 303")
    for chunk in stream:
        assert chunk.stream == "stdout"
        break
    deadline = time.monotonic() + 10
    while "sleep 303" in _processes(sb) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert "sleep 303" not in _processes(sb)


# ---------------------------------------------------------------- files
def test_text_and_binary_round_trips(sb: Sandbox) -> None:
    sb.write_file("/tmp/deep/nested/dirs/text.txt", "unicode ✓\n")
    assert sb.read_file("/tmp/deep/nested/dirs/text.txt") == "unicode ✓\n".encode()
    blob = os.urandom(5 * 1024 * 1024)
    sb.write_file("/tmp/blob.bin", blob)
    assert sb.read_file("/tmp/blob.bin") == blob
    assert sb.execute("stat -c %s /tmp/blob.bin").stdout.strip() == str(len(blob))
    sb.write_file("/tmp/blob.bin", b"replaced")
    assert sb.read_file("/tmp/blob.bin") == b"replaced"
    sb.execute("ln -sf /tmp/blob.bin /tmp/link")
    assert sb.read_file("/tmp/link") == b"replaced"


def test_file_errors(sb: Sandbox) -> None:
    for path, kind in (("/no/such/file", "file_not_found"), ("/tmp", "is_directory")):
        with pytest.raises(SandboxError) as info:
            sb.read_file(path)
        assert info.value.code is ErrorCode.FILE_OPERATION_FAILED
        assert info.value.kind == kind  # type: ignore[attr-defined]
        assert path in info.value.message
    with pytest.raises(SandboxError) as info:
        sb.read_file("relative.txt")
    assert info.value.code is ErrorCode.INVALID_ARGUMENT


def test_batch_upload_and_download_partial_success(sb: Sandbox) -> None:
    sb.write_file("/tmp/afile", "x")
    uploads = sb.upload_files(
        [("/tmp/up/a.txt", b"A"), ("relative", b"B"), ("/tmp/afile/child", b"C"), ("/tmp/up/b.txt", "B")]
    )
    assert uploads == [
        FileUploadResult(path="/tmp/up/a.txt"),
        FileUploadResult(path="relative", error="invalid_path"),
        FileUploadResult(path="/tmp/afile/child", error="invalid_path"),
        FileUploadResult(path="/tmp/up/b.txt"),
    ]
    downloads = sb.download_files(["/tmp/up/a.txt", "/missing", "/tmp/up", "/tmp/up/b.txt"])
    assert downloads == [
        FileDownloadResult(path="/tmp/up/a.txt", content=b"A"),
        FileDownloadResult(path="/missing", error="file_not_found"),
        FileDownloadResult(path="/tmp/up", error="is_directory"),
        FileDownloadResult(path="/tmp/up/b.txt", content=b"B"),
    ]


# ---------------------------------------------------------------- factories and async
def test_factories() -> None:
    factory = create_sandbox_factory(timeout=60)
    first, second = factory(), factory(runtime=object())
    try:
        assert first.id != second.id
    finally:
        first.close()
        second.close()
    with pytest.raises(SandboxError) as info:
        create_sandbox_factory(timeout=-1)
    assert info.value.code is ErrorCode.INVALID_ARGUMENT


def test_factory_from_sandbox_reuses_it(sb: Sandbox) -> None:
    factory = create_sandbox_factory_from_sandbox(sb)
    assert factory() is sb
    assert factory(runtime="anything") is sb


@pytest.mark.anyio
async def test_async_twin() -> None:
    async with await AsyncSandbox.create(timeout=60, initial_files={"/w/f.txt": "async"}) as sandbox:
        result = await sandbox.execute("cat /w/f.txt")
        assert isinstance(result, ExecResult)
        assert result.stdout == "async"
        chunks = [c.text async for c in sandbox.stream("echo a; echo b >&2")]
        assert sorted(chunks) == ["a\n", "b\n"]
        await sandbox.write_file("/w/g.bin", b"\x01")
        assert await sandbox.read_file("/w/g.bin") == b"\x01"
        again = await AsyncSandbox.from_id(sandbox.id)
        assert (await again.execute(["cat", "/w/f.txt"])).stdout == "async"
        assert sandbox.id in {i.id for i in await AsyncSandbox.list()}


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def test_a_reconnected_sandbox_outlives_the_process_that_reconnected(sb: Sandbox) -> None:
    import subprocess
    import sys

    code = f"from sandboxkit import Sandbox; print(Sandbox.from_id({sb.id!r}).execute('echo hi').stdout, end='')"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout == "hi\n", out.stderr
    assert sb.execute("echo still-here").stdout == "still-here\n"


def test_a_forgotten_sandbox_is_closed_when_its_creator_exits(docker_engine: docker.DockerClient) -> None:
    import subprocess
    import sys

    code = "from sandboxkit import Sandbox; print(Sandbox.create(timeout=120).id)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    sandbox_id = out.stdout.strip()
    assert sandbox_id, out.stderr
    assert not docker_engine.api.containers(all=True, filters={"id": sandbox_id})
