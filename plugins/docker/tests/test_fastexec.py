"""The fast exec path (one agent per sandbox) against plain docker exec, on real containers.

Every guarantee of ``execute`` must hold the same on both paths, so most tests run one command
through each path of the same sandbox and compare. ``via_docker_exec`` switches a sandbox to
plain docker exec for a moment by setting the fast path's ``disabled`` reason, the switch the
provider itself uses for images without python.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import time
from collections.abc import Iterator
from typing import Any

import anyio
import pytest

import sandboxkit
from sandboxkit import ErrorCode, SandboxError

pytestmark = pytest.mark.docker


@contextlib.contextmanager
def via_docker_exec(sb: sandboxkit.Sandbox) -> Iterator[None]:
    fast = sb.handle.fast  # type: ignore[attr-defined]
    fast.disabled = "switched off by the test"
    try:
        yield
    finally:
        fast.disabled = None


def agent_pid(sb: sandboxkit.Sandbox) -> int:
    """The agent's pid; fails unless the next command really goes through the agent (its reaper's parent)."""
    ppid = int(sb.execute("ps -o ppid= -p $PPID").stdout)
    mux = sb.handle.fast.mux  # type: ignore[attr-defined]
    assert mux is not None, sb.handle.fast.disabled  # type: ignore[attr-defined]
    assert mux.hello is not None, sb.handle.fast.disabled  # type: ignore[attr-defined]
    assert ppid == mux.hello["pid"] != 0
    return ppid


def warm(sb: sandboxkit.Sandbox) -> sandboxkit.Sandbox:
    for _ in range(2):
        sb.execute(["true"])
    agent_pid(sb)
    return sb


@pytest.fixture(scope="module")
def sb(docker_engine: Any) -> Iterator[sandboxkit.Sandbox]:
    with sandboxkit.Sandbox.create(provider="docker", timeout=600, env={"FROM_SPEC": "1"}) as sandbox:
        sandbox.execute("sed -i 's/^users:x:100:.*/users:x:100:nobody/' /etc/group", check=True)
        yield warm(sandbox)


def both(sb: sandboxkit.Sandbox, command: Any, **kwargs: Any) -> tuple[Any, Any]:
    fast = sb.execute(command, **kwargs)
    with via_docker_exec(sb):
        plain = sb.execute(command, **kwargs)
    return fast, plain


def test_agent_starts_beside_the_second_command_and_takes_the_third(docker_engine: Any) -> None:
    with sandboxkit.Sandbox.create(provider="docker", timeout=120) as sandbox:
        fast = sandbox.handle.fast  # type: ignore[attr-defined]
        assert sandbox.execute("echo $PPID").stdout.strip() == "0"  # docker exec: no parent in the sandbox
        assert fast.mux is None
        assert sandbox.execute("echo $PPID").stdout.strip() == "0"
        assert fast.mux is not None
        assert agent_pid(sandbox) > 0


def test_commands_starting_together_start_one_agent(docker_engine: Any) -> None:
    with sandboxkit.Sandbox.create(provider="docker", timeout=120) as sandbox:
        sandbox.execute(["true"])

        async def together() -> None:
            async with anyio.create_task_group() as tg:
                for _ in range(10):
                    tg.start_soon(sandbox.aio.execute, ["true"])

        sandboxkit.portal().call(together)
        agent_pid(sandbox)
        assert sandbox.execute("ps -eo ppid=,comm= | grep -c '^ *0 sbk-exec-agent$'").stdout.strip() == "1"


ENV_AND_IDENTITY = (
    "env | grep -v '^SANDBOXKIT_EXEC_ID=' | sort; id; grep -E '^(Groups|Cap|NoNewPrivs)' /proc/self/status; pwd"
)


@pytest.mark.parametrize("user", [None, "nobody", "1234", "nobody:daemon", "1234:5", "root"])
def test_env_identity_and_cwd_match_docker_exec(sb: sandboxkit.Sandbox, user: str | None) -> None:
    fast, plain = both(sb, ENV_AND_IDENTITY, user=user, env={"PER_CALL": "x y"}, cwd="/tmp")
    assert fast.exit_code == plain.exit_code == 0
    assert fast.stdout == plain.stdout
    assert "PER_CALL=x y" in fast.stdout
    assert "FROM_SPEC=1" in fast.stdout
    assert fast.stdout.rstrip().endswith("/tmp")


@pytest.mark.parametrize(
    ("command", "code"),
    [
        (["true"], 0),
        (["sh", "-c", "exit 3"], 3),
        (["sh", "-c", "exit 300"], 44),
        (["sh", "-c", "kill -TERM $$"], 143),
        (["sh", "-c", "kill -KILL $$"], 137),
    ],
)
def test_exit_codes_match_docker_exec(sb: sandboxkit.Sandbox, command: list[str], code: int) -> None:
    fast, plain = both(sb, command)
    assert fast.exit_code == plain.exit_code == code


def test_streams_stay_apart_and_in_order(sb: sandboxkit.Sandbox) -> None:
    script = "for i in 1 2 3; do echo out$i; sleep 0.05; echo err$i >&2; sleep 0.05; done"
    fast, plain = both(sb, script)
    assert fast.stdout == plain.stdout == "out1\nout2\nout3\n"
    assert fast.stderr == plain.stderr == "err1\nerr2\nerr3\n"
    assert fast.output == plain.output == "out1\nerr1\nout2\nerr2\nout3\nerr3\n"


def test_binary_stdin_and_output_are_exact(sb: sandboxkit.Sandbox) -> None:
    data = bytes(range(256)) * 64 + b"\x00tail\xff"
    fast, plain = both(sb, ["cat"], stdin=data)
    assert fast.stdout_bytes == plain.stdout_bytes == data
    no_stdin_fast, no_stdin_plain = both(sb, "cat; echo eof; ls -l /proc/self/fd/0 | grep -o 'r-x.*null$' | head -c 3")
    assert no_stdin_fast.stdout == no_stdin_plain.stdout == "eof\nr-x"


def test_large_stdin_round_trip_and_unread_stdin(sb: sandboxkit.Sandbox) -> None:
    data = os.urandom(24 << 20)
    r = sb.execute(["sha256sum"], stdin=data)
    assert r.stdout.split()[0] == hashlib.sha256(data).hexdigest()
    start = time.monotonic()
    assert sb.execute(["true"], stdin=data).exit_code == 0
    assert sb.execute(["head", "-c", "5"], stdin=data).stdout_bytes == data[:5]
    assert time.monotonic() - start < 20


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"command": ["nosuchcmd"]}, "nosuchcmd"),
        ({"command": ["/nonexistent"]}, "/nonexistent"),
        ({"command": ["/etc/passwd"]}, "permission denied"),
        ({"command": ["true"], "cwd": "/nope"}, "/nope"),
        ({"command": ["true"], "user": "nosuchuser"}, "nosuchuser"),
    ],
)
def test_commands_that_cannot_start_fail_like_docker_exec(
    sb: sandboxkit.Sandbox, kwargs: dict[str, Any], needle: str
) -> None:
    fast, plain = both(sb, **kwargs)
    assert fast.exit_code == plain.exit_code == 126
    assert needle in fast.output  # docker exec says nothing at all about an unknown user
    if "user" not in kwargs:
        assert needle in plain.output


@pytest.mark.parametrize("user", [None, "nobody"])
def test_timeout_kills_the_whole_tree(sb: sandboxkit.Sandbox, user: str | None) -> None:
    start = time.monotonic()
    with pytest.raises(SandboxError) as err:
        sb.execute("echo started; sleep 300 & setsid sleep 301 & sleep 302", timeout=1, user=user)
    assert err.value.code == ErrorCode.COMMAND_TIMEOUT
    assert time.monotonic() - start < 8
    assert err.value.result is not None
    assert err.value.result.stdout == "started\n"
    left = sb.execute("ps -eo args | grep -c '^sleep 30[012]$' || true").stdout.strip()
    assert left == "0"


def test_cancelled_command_is_killed(sb: sandboxkit.Sandbox) -> None:
    async def cancel_soon() -> None:
        with anyio.move_on_after(1.0):
            await sb.aio.execute("sleep 303")

    sandboxkit.portal().call(cancel_soon)
    deadline = time.monotonic() + 10
    while sb.execute("ps -eo args | grep -c '^sleep 303$' || true").stdout.strip() != "0":
        assert time.monotonic() < deadline, "the cancelled command kept running"
        time.sleep(0.2)


def test_concurrent_commands_run_at_once_and_stay_matched(sb: sandboxkit.Sandbox) -> None:
    results: dict[int, Any] = {}

    async def one(i: int) -> None:
        results[i] = await sb.aio.execute(f"sleep 1; echo out{i}; echo err{i} >&2; exit {i % 7}")

    async def all_of_them() -> float:
        start = time.monotonic()
        async with anyio.create_task_group() as tg:
            for i in range(40):
                tg.start_soon(one, i)
        return time.monotonic() - start

    took = sandboxkit.portal().call(all_of_them)
    for i, r in results.items():
        assert (r.stdout, r.stderr, r.exit_code) == (f"out{i}\n", f"err{i}\n", i % 7)
    assert took < 20  # 40 s if they ran one after another


def test_streaming_is_live(sb: sandboxkit.Sandbox) -> None:
    seen: list[tuple[float, str]] = []
    start = time.monotonic()
    stream = sb.stream("echo first; sleep 2; echo second")
    for chunk in stream:
        seen.append((time.monotonic() - start, chunk.text))
    assert "".join(t for _, t in seen) == "first\nsecond\n"
    assert seen[0][0] < seen[-1][0] - 1.0
    assert stream.result is not None
    assert stream.result.exit_code == 0


def test_output_flood_is_capped_and_completes(sb: sandboxkit.Sandbox) -> None:
    r = sb.execute("head -c 60000000 /dev/zero; echo done >&2", max_output=1 << 20)
    assert r.truncated
    assert len(r.output_bytes) == 1 << 20
    assert r.exit_code == 0
    r = sb.execute("head -c 20000000 /dev/urandom | wc -c; head -c 20000000 /dev/zero", max_output=32 << 20)
    assert r.stdout_bytes.startswith(b"20000000\n")
    assert len(r.stdout_bytes) == 9 + 20000000


def test_values_passed_per_command_never_reach_the_agent(sb: sandboxkit.Sandbox) -> None:
    secret = "s3cr3t-" + os.urandom(6).hex()
    assert sb.execute("echo $TOKEN", env={"TOKEN": secret}).stdout.strip() == secret
    pid = agent_pid(sb)
    seen = sb.execute(f"cat /proc/{pid}/cmdline /proc/{pid}/environ | tr '\\0' '\\n'").stdout
    assert secret not in seen
    assert "sandboxkit-exec-agent" in seen
    assert len(seen) < 4000  # the loader, not the agent's source


def test_agent_killed_mid_command_reports_and_recovers(docker_engine: Any) -> None:
    with sandboxkit.Sandbox.create(provider="docker", timeout=120) as sandbox:
        first = agent_pid(warm(sandbox))
        r = sandbox.execute(f"kill -9 {first}; sleep 0.5; echo after")
        assert r.exit_code == 137  # the command's end could not be seen: it is reported killed
        assert sandbox.execute("echo ok").stdout == "ok\n"  # plain docker exec while a new agent starts
        assert sandbox.execute("echo ok").stdout == "ok\n"
        assert agent_pid(sandbox) != first


def test_busybox_image_stays_on_docker_exec(docker_engine: Any) -> None:
    with sandboxkit.Sandbox.create(provider="docker", image="sandboxkit/busybox:latest", timeout=120) as sandbox:
        for i in range(4):
            r = sandbox.execute(f"echo {i}; echo $PPID")
            assert r.stdout == f"{i}\n0\n"
        assert "did not start" in (sandbox.handle.fast.disabled or "")  # type: ignore[attr-defined]
        with pytest.raises(SandboxError) as err:
            sandbox.execute("sleep 300 & sleep 301", timeout=1)
        assert err.value.code == ErrorCode.COMMAND_TIMEOUT


def test_small_memory_limit_and_the_switch_keep_docker_exec(docker_engine: Any, monkeypatch: Any) -> None:
    with sandboxkit.Sandbox.create(provider="docker", timeout=120, memory_mib=128) as sandbox:
        assert "memory limit" in (sandbox.handle.fast.disabled or "")  # type: ignore[attr-defined]
    monkeypatch.setenv("SANDBOXKIT_DOCKER_FAST_EXEC", "0")
    with sandboxkit.Sandbox.create(provider="docker", timeout=120) as sandbox:
        for _ in range(3):
            assert sandbox.execute("echo $PPID").stdout == "0\n"


def test_idle_timeout_counts_the_agents_commands_not_the_agent(docker_engine: Any) -> None:
    with sandboxkit.Sandbox.create(provider="docker", timeout=120, idle_timeout=3) as sandbox:
        warm(sandbox)
        assert sandbox.execute("sleep 7; echo done").stdout == "done\n"  # busy, through the agent, past 2x idle
        deadline = time.monotonic() + 12
        while docker_engine.api.containers(filters={"id": sandbox.id, "status": "running"}):
            assert time.monotonic() < deadline, "an idle sandbox with a live agent outlived idle_timeout"
            time.sleep(0.5)


def test_secrets_reach_agent_commands_and_no_long_lived_process(
    docker_engine: Any, tmp_path: Any, monkeypatch: Any
) -> None:
    from sandboxkit.secrets import create_secret

    value = "sv-" + os.urandom(8).hex()
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    create_secret("fast-keys", {"FAST_TOKEN": value})
    with sandboxkit.Sandbox.create(provider="docker", timeout=120, secrets=["fast-keys"]) as sandbox:
        pid = agent_pid(warm(sandbox))
        through = sandbox.execute("echo $FAST_TOKEN $(ps -o ppid= -p $PPID)").stdout.split()
        assert through == [value, str(pid)]  # through the agent
        # scanned with a plain docker exec that carries no secret: no process holds the value now
        head, tail = value[:5], value[5:]  # the scanner's own argv must not hold the value whole
        scan = docker_engine.containers.get(sandbox.id).exec_run(
            ["sh", "-c", f"printf %s%s {head} {tail} > /tmp/p; grep -lFf /tmp/p /proc/[0-9]*/environ "
             "/proc/[0-9]*/cmdline 2>/dev/null; true"]
        )  # fmt: skip
        assert scan.output.decode().strip() == ""


# ---------------------------------------------------------------------------------------- files
@contextlib.contextmanager
def archive_refused(monkeypatch: Any) -> Iterator[None]:
    """Make Docker's archive API fail for a moment, so a file operation that works went through the agent."""
    from sandboxkit_docker import _archive, provider

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the archive API was used")

    with monkeypatch.context() as patch:
        patch.setattr(_archive, "fetch", refuse)
        patch.setattr(provider.DockerSandbox, "_put", refuse)
        yield


def stat(sb: sandboxkit.Sandbox, *paths: str) -> list[str]:
    return sb.execute(["stat", "-c", "%U:%G %a %F", *paths], check=True).stdout.splitlines()


@pytest.mark.parametrize("size", [0, 1, (1 << 20) + 3, 20 << 20])
def test_plain_files_move_through_the_agent(sb: sandboxkit.Sandbox, monkeypatch: Any, size: int) -> None:
    data = os.urandom(size)
    with archive_refused(monkeypatch):
        sb.write_file(f"/tmp/files/agent-{size}.bin", data)
        assert sb.read_file(f"/tmp/files/agent-{size}.bin") == data
    digest = sb.execute(["sha256sum", f"/tmp/files/agent-{size}.bin"], check=True).stdout.split()[0]
    assert digest == hashlib.sha256(data).hexdigest()


def test_written_files_and_new_parents_look_as_the_archive_api_leaves_them(
    sb: sandboxkit.Sandbox, monkeypatch: Any
) -> None:
    sb.execute("mkdir -p /tmp/own && install -m 600 -o nobody /dev/null /tmp/own/a", check=True)
    sb.execute("cp -p /tmp/own/a /tmp/own/b", check=True)
    with archive_refused(monkeypatch):
        sb.write_file("/tmp/own/a", b"agent")  # an existing file of another owner and mode
        sb.write_file("/tmp/fresh-a/x/y/f", b"agent")  # missing parents
    with via_docker_exec(sb):
        sb.write_file("/tmp/own/b", b"archive")
        sb.write_file("/tmp/fresh-b/x/y/f", b"archive")
    assert stat(sb, "/tmp/own/a", "/tmp/fresh-a/x", "/tmp/fresh-a/x/y", "/tmp/fresh-a/x/y/f") == stat(
        sb, "/tmp/own/b", "/tmp/fresh-b/x", "/tmp/fresh-b/x/y", "/tmp/fresh-b/x/y/f"
    )
    assert sb.execute("ls -a /tmp/own /tmp/fresh-a/x/y | grep -c sbk || true").stdout == "0\n"  # no temporary left


def outcome(operation: Any, *args: Any) -> Any:
    try:
        return ("ok", operation(*args))
    except SandboxError as exc:
        return (exc.code, getattr(exc, "kind", None))


@pytest.mark.parametrize(
    ("setup", "operation"),
    [
        ("true", lambda sb, p: sb.read_file(f"{p}/missing")),
        ("mkdir -p {p}/dir", lambda sb, p: sb.read_file(f"{p}/dir")),
        ("mkdir -p {p}/dir", lambda sb, p: sb.write_file(f"{p}/dir", b"x")),
        ("echo f > {p}/file", lambda sb, p: sb.write_file(f"{p}/file/under", b"x")),
        ("echo t > {p}/t && ln -s t {p}/link", lambda s, p: (s.write_file(f"{p}/link", b"n"), s.read_file(f"{p}/t"))),
        ("echo target > {p}/t && ln -s t {p}/link", lambda sb, p: sb.read_file(f"{p}/link")),
        ("ln -s nowhere {p}/dangling", lambda sb, p: sb.read_file(f"{p}/dangling")),
        ("mkfifo {p}/fifo", lambda sb, p: sb.write_file(f"{p}/fifo", b"x")),
    ],
    ids=["read-missing", "read-dir", "write-onto-dir", "write-under-file", "write-symlink", "read-symlink",
         "read-dangling", "write-fifo"],
)  # fmt: skip
def test_unusual_paths_end_as_on_the_archive_api(sb: sandboxkit.Sandbox, setup: str, operation: Any) -> None:
    results = []
    for name, path in (("agent", "/tmp/odd-agent"), ("archive", "/tmp/odd-archive")):
        sb.execute(f"rm -rf {path} && mkdir -p {path} && " + setup.format(p=path), check=True)
        with via_docker_exec(sb) if name == "archive" else contextlib.nullcontext():
            results.append(outcome(operation, sb, path))
        results.append(sb.execute(f"cd {path} && ls -la | awk '{{print $1, $NF}}'").stdout)
    assert results[0:2] == results[2:4]


def test_files_over_max_file_mib_are_written_as_before(docker_engine: Any, monkeypatch: Any) -> None:
    with sandboxkit.Sandbox.create(provider="docker", timeout=120, provider_options={"max_file_mib": 1}) as box:
        warm(box)
        data = os.urandom(2 << 20)
        box.write_file("/tmp/agent.bin", data)  # the agent hits the cap and declines; the archive API writes it
        with via_docker_exec(box):
            box.write_file("/tmp/archive.bin", data)
        assert box.read_file("/tmp/agent.bin") == box.read_file("/tmp/archive.bin") == data
        assert box.execute("ls -a /tmp | grep -c sbk || true").stdout == "0\n"


def test_cancelled_write_leaves_no_temporary_file(sb: sandboxkit.Sandbox) -> None:
    async def main() -> None:
        box = await sandboxkit.AsyncSandbox.from_id(sb.id, provider="docker")  # a second handle; not closed
        for _ in range(3):
            await box.execute(["true"])
        assert box.handle.fast.transfer_agent() is not None  # type: ignore[attr-defined]
        with anyio.move_on_after(0.05):
            await box.write_file("/tmp/cancelled/big.bin", os.urandom(200 << 20))

    anyio.run(main)
    deadline = time.monotonic() + 5
    while sb.execute("ls -a /tmp/cancelled 2>/dev/null | grep -c sbk || true").stdout != "0\n":
        assert time.monotonic() < deadline, "a cancelled write left its temporary file"
        time.sleep(0.2)


def test_concurrent_transfers_and_commands_share_the_agent(sb: sandboxkit.Sandbox, monkeypatch: Any) -> None:
    blobs = {f"/tmp/many/{i}.bin": os.urandom(50_000 + i) for i in range(20)}

    async def main() -> None:
        box = await sandboxkit.AsyncSandbox.from_id(sb.id, provider="docker")  # a second handle; not closed
        for _ in range(3):
            await box.execute(["true"])
        with archive_refused(monkeypatch):
            async with anyio.create_task_group() as tg:
                for path, data in blobs.items():
                    tg.start_soon(box.write_file, path, data)
                    tg.start_soon(box.execute, ["sh", "-c", "echo busy"])
            got = await box.download_files(list(blobs))
            batch = await box.upload_files([(p + ".copy", d) for p, d in blobs.items()])
        assert [g.content for g in got] == list(blobs.values())
        assert [r.error for r in batch] == [None] * len(blobs)
        assert [await box.read_file(p + ".copy") for p in blobs] == list(blobs.values())

    anyio.run(main)


def test_home_from_the_config_survives_user_on_both_paths(docker_engine: Any) -> None:
    with sandboxkit.Sandbox.create(provider="docker", timeout=120, env={"HOME": "/custom"}) as box:
        fast, plain = both(warm(box), "echo $HOME", user="nobody")
        assert fast.stdout == plain.stdout == "/custom\n"


def test_both_streams_flooding_at_once_arrive_whole(sb: sandboxkit.Sandbox) -> None:
    # one stream can use up the credit in the turn where both are readable: the other must wait, not close
    command = "head -c 24000000 /dev/zero & head -c 24000000 /dev/zero >&2; wait"
    for _ in range(3):
        r = sb.execute(command, max_output=64 << 20, timeout=120)
        assert (r.exit_code, len(r.stdout_bytes), len(r.stderr_bytes)) == (0, 24_000_000, 24_000_000)
