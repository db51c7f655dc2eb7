"""Commands: exit codes, output, quoting, env, cwd, stdin, timeouts, check=, streaming, big and odd output."""

from __future__ import annotations

import shlex
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from sandboxkit import Capability, CommandFailedError, CommandTimeoutError, ErrorCode, OutputChunk, Sandbox
from sandboxkit_conformance._target import ConformanceTarget, requires
from sandboxkit_conformance.suite._support import (
    TIMEOUT_SLACK,
    beats,
    expect_error,
    heartbeat_command,
    heartbeat_names,
    still_beating,
    unique,
)

__all__ = ["TestCreateEnvAndWorkdir", "TestExecute", "TestStdin", "TestStreaming", "TestTimeouts"]

#: Arguments no shell may touch on their way to the program.
AWKWARD_ARGS = [
    "$HOME",
    "a b",
    "it's",
    '"double"',
    "`id`",
    "$(id)",
    "*",
    "; echo injected",
    "back\\slash",
    "",
    "tab\there",
    "line\nbreak",
    "ünïcödé ✓",
]


class TestExecute:
    """Every provider: what a command returns, exactly."""

    def test_exit_codes_are_results(self, shared_sandbox: Sandbox) -> None:
        for code in (0, 1, 2, 42, 255):
            result = shared_sandbox.execute(f"exit {code}")
            assert result.exit_code == code, f"`exit {code}` returned exit_code {result.exit_code}"
            assert result.ok is (code == 0)
        assert shared_sandbox.execute(["false"]).exit_code == 1

    def test_a_signal_death_is_a_result_not_a_timeout(self, shared_sandbox: Sandbox) -> None:
        result = shared_sandbox.execute("kill -TERM $$", timeout=60)
        assert result.exit_code == 128 + 15, "a command killed by SIGTERM exits 143 (128 + 15)"

    def test_missing_commands_are_results(self, shared_sandbox: Sandbox) -> None:
        assert shared_sandbox.execute("sbkc-no-such-command").exit_code == 127
        result = shared_sandbox.execute(["/sbkc/no/such/binary"])
        assert result.exit_code in (126, 127), f"a missing program gives exit 126 or 127, got {result.exit_code}"

    def test_stdout_and_stderr_are_exact_and_separate(self, shared_sandbox: Sandbox) -> None:
        result = shared_sandbox.execute("printf 'foo\\nbar\\n'; printf 'err\\n' >&2")
        assert result.stdout == "foo\nbar\n", "stdout must arrive byte for byte (no \\r\\n, no stripping)"
        assert result.stderr == "err\n"
        assert (result.stdout_bytes, result.stderr_bytes) == (b"foo\nbar\n", b"err\n")

    def test_output_keeps_arrival_order(self, shared_sandbox: Sandbox) -> None:
        script = (
            "printf 'o1\\n'; sleep 0.3; printf 'e1\\n' >&2; sleep 0.3; printf 'o2\\n'; sleep 0.3; printf 'e2\\n' >&2"
        )
        result = shared_sandbox.execute(script)
        assert result.output == "o1\ne1\no2\ne2\n", "output is stdout and stderr interleaved in arrival order"
        assert result.output_bytes == b"o1\ne1\no2\ne2\n"

    def test_argv_reaches_the_program_untouched(self, shared_sandbox: Sandbox) -> None:
        result = shared_sandbox.execute(["printf", "[%s]\\n", *AWKWARD_ARGS])
        assert result.stdout == "".join(f"[{arg}]\n" for arg in AWKWARD_ARGS)

    def test_a_string_runs_under_sh(self, shared_sandbox: Sandbox) -> None:
        assert shared_sandbox.execute("echo $((1 + 2)) | cat && echo ok || echo no").stdout == "3\nok\n"
        assert shared_sandbox.execute("echo redirected > /tmp/sbkc-redir && cat < /tmp/sbkc-redir").stdout == (
            "redirected\n"
        )
        heredoc = "cat <<'EOF'\nline one $HOME\n  line two\nEOF\necho after"
        assert shared_sandbox.execute(heredoc).stdout == "line one $HOME\n  line two\nafter\n"

    def test_a_quoted_string_keeps_every_character(self, shared_sandbox: Sandbox) -> None:
        command = "printf '[%s]\\n' " + " ".join(shlex.quote(arg) for arg in AWKWARD_ARGS)
        assert shared_sandbox.execute(command).stdout == "".join(f"[{arg}]\n" for arg in AWKWARD_ARGS)

    def test_a_large_argv(self, shared_sandbox: Sandbox) -> None:
        args = [chr(ord("a") + i) * 65536 for i in range(16)]
        script = 'n=0; for a in "$@"; do n=$((n + ${#a})); done; echo $n'
        result = shared_sandbox.execute(["sh", "-c", script, "sh", *args])
        assert result.stdout == f"{16 * 65536}\n", "1 MiB of arguments must arrive whole"

    def test_env_applies_to_one_call(self, shared_sandbox: Sandbox) -> None:
        env = {"SBKC_A": "one two", "SBKC_EMPTY": "", "SBKC_UNI": "ü✓", "SBKC_SPECIAL": "$HOME `x` \"q\" 'y'"}
        show = 'printf "%s|" "$SBKC_A" "${SBKC_EMPTY-unset}" "$SBKC_UNI" "$SBKC_SPECIAL"'
        assert shared_sandbox.execute(show, env=env).stdout == "one two||ü✓|$HOME `x` \"q\" 'y'|"
        assert shared_sandbox.execute('printf %s "${SBKC_A-unset}"').stdout == "unset", "env must not leak"

    def test_cwd(self, shared_sandbox: Sandbox) -> None:
        assert shared_sandbox.execute("pwd", cwd="/tmp").stdout == "/tmp\n"
        assert shared_sandbox.execute(["sh", "-c", "pwd"], cwd="/").stdout == "/\n"
        shared_sandbox.execute("echo relative > sbkc-rel.txt", cwd="/tmp")
        assert shared_sandbox.read_file("/tmp/sbkc-rel.txt") == b"relative\n"

    def test_no_stdin_means_end_of_file(self, shared_sandbox: Sandbox) -> None:
        result = shared_sandbox.execute("cat; echo end", timeout=60)
        assert result.stdout == "end\n", "without stdin= a command reads EOF at once (it must not hang)"

    def test_check_raises_command_failed(self, shared_sandbox: Sandbox) -> None:
        assert shared_sandbox.execute("true", check=True).exit_code == 0
        with expect_error(ErrorCode.COMMAND_FAILED, "check=True on `exit 3`") as caught:
            shared_sandbox.execute("echo out; echo err >&2; exit 3", check=True)
        error = caught.error
        assert isinstance(error, CommandFailedError) and error.result is not None
        assert (error.result.exit_code, error.result.stdout, error.result.stderr) == (3, "out\n", "err\n")

    def test_non_utf8_and_binary_output(self, shared_sandbox: Sandbox) -> None:
        raw = b"\xff\xfe\x00abc\x80"
        result = shared_sandbox.execute("printf '\\377\\376\\000abc\\200'; printf '\\377err' >&2")
        assert result.stdout_bytes == raw, "binary output must arrive byte for byte"
        assert result.stderr_bytes == b"\xfferr"
        assert "abc" in result.stdout and "\ufffd" in result.stdout, "text views decode with replacement"

    def test_utf8_output_is_decoded(self, shared_sandbox: Sandbox) -> None:
        result = shared_sandbox.execute("printf '\\303\\251\\342\\234\\223\\n'; printf '\\303\\274\\n' >&2")
        assert (result.stdout, result.stderr) == ("é✓\n", "ü\n")

    def test_large_output_is_complete(self, shared_sandbox: Sandbox) -> None:
        out, err = 20 << 20, 4 << 20
        result = shared_sandbox.execute(
            f"head -c {out} /dev/zero | tr '\\000' a; head -c {err} /dev/zero | tr '\\000' b >&2",
            timeout=300,
            max_output=64 << 20,
        )
        assert not result.truncated
        assert len(result.stdout_bytes) == out and result.stdout_bytes.count(b"a") == out
        assert len(result.stderr_bytes) == err and result.stderr_bytes.count(b"b") == err
        assert len(result.output_bytes) == out + err

    def test_truncation_is_flagged_and_keeps_the_head(self, shared_sandbox: Sandbox) -> None:
        marker = f"/tmp/{unique('ran')}"
        result = shared_sandbox.execute(
            f"head -c 1048576 /dev/zero | tr '\\000' x; echo done > {marker}", max_output=1000
        )
        assert result.truncated, "output past max_output must set truncated"
        assert result.output_bytes == b"x" * 1000
        assert result.exit_code == 0
        assert shared_sandbox.read_file(marker) == b"done\n", "a truncated command still runs to its end"
        assert not shared_sandbox.execute("echo small", max_output=1000).truncated

    def test_concurrent_commands_do_not_mix(self, shared_sandbox: Sandbox) -> None:
        def run(n: int) -> tuple[int, str]:
            result = shared_sandbox.execute(f"for i in 1 2 3; do echo {n}-$i; sleep 0.2; done")
            return n, result.stdout

        with ThreadPoolExecutor(4) as pool:
            for n, stdout in pool.map(run, range(4)):
                assert stdout == f"{n}-1\n{n}-2\n{n}-3\n", f"command {n} got someone else's output"

    @requires(Capability.USER)
    def test_user(self, shared_sandbox: Sandbox) -> None:
        assert shared_sandbox.execute("id -u", user="65534").stdout == "65534\n", "user= as a numeric uid"
        assert shared_sandbox.execute(["id", "-u"], user=65534).stdout == "65534\n", "user= as an int uid"
        if shared_sandbox.execute("grep -q '^nobody:x:65534:' /etc/passwd").exit_code == 0:
            assert shared_sandbox.execute(["id", "-u"], user="nobody").stdout == "65534\n", "user= as a name"
        assert shared_sandbox.execute("id -u").stdout != "65534\n", "user= applies to one call only"


class TestTimeouts:
    """Every provider: a per-call timeout kills the command's whole process tree and raises COMMAND_TIMEOUT."""

    def test_timeout_raises_with_the_partial_output(self, shared_sandbox: Sandbox) -> None:
        started = time.monotonic()
        with expect_error(ErrorCode.COMMAND_TIMEOUT, "`sleep 120` with timeout=2") as caught:
            shared_sandbox.execute("echo before; sleep 120; echo after", timeout=2)
        elapsed = time.monotonic() - started
        assert elapsed < 2 + TIMEOUT_SLACK, (
            f"COMMAND_TIMEOUT came {elapsed:.1f}s after a 2s timeout: the provider did not stop the command "
            "itself (the facade's safety net did); kill the process tree at the deadline and report timed_out"
        )
        error = caught.error
        assert isinstance(error, CommandTimeoutError) and isinstance(error, TimeoutError)
        assert error.result is not None and error.result.stdout == "before\n", "the partial output rides on .result"
        assert shared_sandbox.execute("echo alive").stdout == "alive\n", "the sandbox survives a timeout"

    def test_the_whole_tree_is_dead_when_the_timeout_is_raised(self, shared_sandbox: Sandbox) -> None:
        """A background child and a setsid grandchild die too, before COMMAND_TIMEOUT reaches the caller."""
        detached = shared_sandbox.execute("command -v setsid").exit_code == 0
        directory = f"/tmp/{unique('hb')}"
        with expect_error(ErrorCode.COMMAND_TIMEOUT, "a heartbeat tree with timeout=3"):
            shared_sandbox.execute(heartbeat_command(directory, detached=detached), timeout=3)
        raised = time.monotonic()
        alive = still_beating(shared_sandbox, directory, by=raised)
        assert not alive, (
            f"processes of the timed-out command still ran after COMMAND_TIMEOUT was raised: {alive} "
            "(kill the whole tree, setsid descendants included, before reporting timed_out)"
        )
        seen = beats(shared_sandbox, directory)
        assert heartbeat_names(detached) <= set(seen), (
            f"the tree never fully started (saw {seen}): the check proves nothing"
        )

    def test_a_quick_command_is_not_timed_out(self, shared_sandbox: Sandbox) -> None:
        result = shared_sandbox.execute("echo quick", timeout=60)
        assert (result.exit_code, result.stdout) == (0, "quick\n")


@requires(Capability.STDIN)
class TestStdin:
    """``stdin=`` delivers exact bytes, then EOF."""

    def test_text_with_shell_specials_arrives_verbatim(self, shared_sandbox: Sandbox) -> None:
        text = "line1\n$HOME `id` \"q\" 'x' \\back ✓\nno newline at end"
        assert shared_sandbox.execute("cat", stdin=text).stdout == text

    def test_binary_arrives_exactly(self, shared_sandbox: Sandbox) -> None:
        data = bytes(range(256)) * 64
        assert shared_sandbox.execute(["cat"], stdin=data).stdout_bytes == data

    def test_empty_stdin_is_end_of_file(self, shared_sandbox: Sandbox) -> None:
        assert shared_sandbox.execute("cat; echo end", stdin="", timeout=60).stdout == "end\n"

    def test_large_stdin(self, shared_sandbox: Sandbox) -> None:
        size = 50 << 20
        result = shared_sandbox.execute("wc -c", stdin=b"\x01" * size, timeout=300)
        assert result.stdout.strip() == str(size), "50 MiB of stdin must arrive whole"


@requires(Capability.STREAMING)
class TestStreaming:
    """``stream()`` yields output while the command runs; ``.result`` is set at the end."""

    def test_output_arrives_while_the_command_runs(self, shared_sandbox: Sandbox) -> None:
        stream = shared_sandbox.stream("for i in 1 2 3; do echo $i; sleep 1; done")
        arrivals: list[tuple[float, OutputChunk]] = [(time.monotonic(), chunk) for chunk in stream]
        assert "".join(chunk.text for _, chunk in arrivals) == "1\n2\n3\n"
        assert arrivals[-1][0] - arrivals[0][0] >= 1.0, "chunks arrived together: output was buffered, not streamed"
        assert stream.result is not None
        assert (stream.result.exit_code, stream.result.stdout) == (0, "1\n2\n3\n")

    def test_chunks_say_their_stream(self, shared_sandbox: Sandbox) -> None:
        chunks = list(shared_sandbox.stream("echo out; sleep 0.2; echo err >&2"))
        assert {c.stream for c in chunks} <= {"stdout", "stderr"}
        assert "".join(c.text for c in chunks if c.stream == "stdout") == "out\n"
        assert b"".join(c.data for c in chunks if c.stream == "stderr") == b"err\n"
        assert all(str(c) == c.text for c in chunks)

    def test_a_character_split_across_chunks_decodes_whole(self, shared_sandbox: Sandbox) -> None:
        chunks = list(shared_sandbox.stream("printf '\\303'; sleep 0.5; printf '\\251\\n'"))
        assert "".join(c.text for c in chunks) == "é\n"

    def test_timeout_raises_after_the_partial_output(self, shared_sandbox: Sandbox) -> None:
        seen: list[str] = []
        with expect_error(ErrorCode.COMMAND_TIMEOUT, "stream() of `sleep 120` with timeout=2"):
            for chunk in shared_sandbox.stream("echo first; sleep 120", timeout=2):
                seen.append(chunk.text)
        assert "".join(seen) == "first\n"

    def test_check_raises_at_the_end(self, shared_sandbox: Sandbox) -> None:
        seen: list[str] = []
        with expect_error(ErrorCode.COMMAND_FAILED, "stream() of `exit 4` with check=True"):
            for chunk in shared_sandbox.stream("echo last words; exit 4", check=True):
                seen.append(chunk.text)
        assert "".join(seen) == "last words\n"


class TestCreateEnvAndWorkdir:
    """``env=`` and ``workdir=`` given at create apply to every command."""

    @pytest.fixture(scope="class")
    @classmethod
    def configured(cls, request: pytest.FixtureRequest, conformance: ConformanceTarget) -> Sandbox:
        sandbox = conformance.create(
            env={"SBKC_CREATE": "from create", "SBKC_OVERRIDE": "create"}, workdir="/sbkc/work dir"
        )
        request.addfinalizer(lambda: conformance.close(sandbox))
        return sandbox

    def test_workdir_is_the_default_cwd(self, configured: Sandbox) -> None:
        assert configured.execute("pwd").stdout == "/sbkc/work dir\n"
        assert configured.execute(["pwd"]).stdout == "/sbkc/work dir\n"

    def test_relative_paths_land_in_the_workdir(self, configured: Sandbox) -> None:
        configured.execute("echo hi > rel.txt")
        assert configured.read_file("/sbkc/work dir/rel.txt") == b"hi\n"

    def test_create_env_reaches_every_command(self, configured: Sandbox) -> None:
        assert configured.execute('printf %s "$SBKC_CREATE"').stdout == "from create"
        assert configured.execute(["sh", "-c", 'printf "%s\\n" "$SBKC_CREATE"']).stdout == "from create\n"

    def test_call_env_overrides_create_env_for_one_call(self, configured: Sandbox) -> None:
        show = 'printf %s "$SBKC_OVERRIDE"'
        assert configured.execute(show, env={"SBKC_OVERRIDE": "call"}).stdout == "call"
        assert configured.execute(show).stdout == "create"
