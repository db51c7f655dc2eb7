"""Files: round trips, parents, big transfers, errors, batch partial success, initial_files."""

from __future__ import annotations

import hashlib
import os

from sandboxkit import ErrorCode, FileOperationError, Sandbox
from sandboxkit_conformance._target import ConformanceTarget, SandboxPool
from sandboxkit_conformance.suite._support import (
    FILE_ERROR_KINDS,
    assert_nothing_left,
    expect_error,
    probe_labels,
    unique,
)

__all__ = ["TestFiles", "TestInitialFiles"]


def _tmp(name: str) -> str:
    return f"/tmp/{unique(name)}"


class TestFiles:
    """Every provider: files move in and out byte for byte; failures say which file and why."""

    def test_text_round_trip(self, shared_sandbox: Sandbox) -> None:
        path, text = _tmp("text"), "line1\nline2\r\nünï ✓ # 😀\n\ttab\n"
        shared_sandbox.write_file(path, text)
        assert shared_sandbox.read_file(path) == text.encode(), "str is written as UTF-8, CRLF kept"
        assert shared_sandbox.execute(["cat", path]).stdout_bytes == text.encode(), "commands see the same bytes"

    def test_binary_round_trip(self, shared_sandbox: Sandbox) -> None:
        path, data = _tmp("binary"), bytes(range(256)) * 4 + b"\xc3\x28"
        shared_sandbox.write_file(path, data)
        assert shared_sandbox.read_file(path) == data

    def test_empty_file(self, shared_sandbox: Sandbox) -> None:
        path = _tmp("empty")
        shared_sandbox.write_file(path, b"")
        assert shared_sandbox.read_file(path) == b""
        assert shared_sandbox.execute(["wc", "-c", path]).stdout.split()[0] == "0"

    def test_overwrite_replaces_the_whole_file(self, shared_sandbox: Sandbox) -> None:
        path = _tmp("overwrite")
        shared_sandbox.write_file(path, "a much longer first version")
        shared_sandbox.write_file(path, "second")
        assert shared_sandbox.read_file(path) == b"second"

    def test_missing_parents_are_created(self, shared_sandbox: Sandbox) -> None:
        root = _tmp("parents")
        shared_sandbox.write_file(f"{root}/a/b/c/d.txt", "deep")
        assert shared_sandbox.read_file(f"{root}/a/b/c/d.txt") == b"deep"
        assert shared_sandbox.execute(["test", "-d", f"{root}/a/b/c"]).exit_code == 0

    def test_names_with_spaces_and_unicode(self, shared_sandbox: Sandbox) -> None:
        path = f"{_tmp('odd dir')}/file name ü✓ 'q'.txt"
        shared_sandbox.write_file(path, "odd")
        assert shared_sandbox.read_file(path) == b"odd"
        assert shared_sandbox.execute(["cat", path]).stdout == "odd"

    def test_files_made_by_commands_can_be_read(self, shared_sandbox: Sandbox) -> None:
        path = _tmp("inside")
        shared_sandbox.execute(f"printf 'made inside\\000' > {path}")
        assert shared_sandbox.read_file(path) == b"made inside\x00"

    def test_read_follows_symlinks(self, shared_sandbox: Sandbox) -> None:
        target, link = _tmp("target"), _tmp("link")
        shared_sandbox.write_file(target, "through the link")
        shared_sandbox.execute(["ln", "-s", target, link], check=True)
        assert shared_sandbox.read_file(link) == b"through the link"

    def test_50_mib_both_ways(self, shared_sandbox: Sandbox) -> None:
        path, data = _tmp("big"), os.urandom(50 << 20)
        shared_sandbox.write_file(path, data)
        assert shared_sandbox.execute(["wc", "-c", path]).stdout.split()[0] == str(len(data))
        digest = shared_sandbox.execute(["sha256sum", path])
        if digest.exit_code == 0:
            assert digest.stdout.split()[0] == hashlib.sha256(data).hexdigest(), "the upload was corrupted"
        assert shared_sandbox.read_file(path) == data, "the download differs from what was uploaded"

    def test_reading_a_missing_file_fails(self, shared_sandbox: Sandbox) -> None:
        path = _tmp("missing")
        with expect_error(ErrorCode.FILE_OPERATION_FAILED, "read_file() of a missing file") as caught:
            shared_sandbox.read_file(path)
        assert isinstance(caught.error, FileOperationError)
        assert path in str(caught.error), "the message names the path"

    def test_reading_a_directory_fails_and_leaves_the_sandbox_working(self, shared_sandbox: Sandbox) -> None:
        directory = _tmp("dir")
        shared_sandbox.write_file(f"{directory}/big.bin", os.urandom(16 << 20))  # more than any socket buffer
        with expect_error(ErrorCode.FILE_OPERATION_FAILED, "read_file() of a directory"):
            shared_sandbox.read_file(directory)
        result = shared_sandbox.execute("echo still answering", timeout=30)
        assert result.stdout == "still answering\n"

    def test_writing_where_a_directory_is_fails(self, shared_sandbox: Sandbox) -> None:
        path = _tmp("dir")
        shared_sandbox.execute(["mkdir", "-p", f"{path}/inside"], check=True)
        with expect_error(ErrorCode.FILE_OPERATION_FAILED, "write_file() onto a directory"):
            shared_sandbox.write_file(path, "x")
        assert shared_sandbox.execute(["test", "-d", f"{path}/inside"]).exit_code == 0, "the directory must survive"

    def test_writing_below_a_file_fails(self, shared_sandbox: Sandbox) -> None:
        path = _tmp("file")
        shared_sandbox.write_file(path, "a regular file")
        with expect_error(ErrorCode.FILE_OPERATION_FAILED, "write_file() below a regular file"):
            shared_sandbox.write_file(f"{path}/child", "x")
        assert shared_sandbox.read_file(path) == b"a regular file"

    def test_relative_paths_are_invalid(self, shared_sandbox: Sandbox) -> None:
        with expect_error(ErrorCode.INVALID_ARGUMENT, "read_file() of a relative path"):
            shared_sandbox.read_file("relative.txt")
        with expect_error(ErrorCode.INVALID_ARGUMENT, "write_file() to a relative path"):
            shared_sandbox.write_file("relative.txt", "x")

    def test_upload_files_reports_each_file(self, shared_sandbox: Sandbox) -> None:
        root, blocker = _tmp("upload"), _tmp("blocker")
        shared_sandbox.write_file(blocker, "a file, not a directory")
        files: list[tuple[str, str | bytes]] = [
            (f"{root}/a.txt", "A"),
            ("relative.txt", b"R"),
            (f"{blocker}/child.txt", b"C"),
            (f"{root}/sub/b.bin", b"\x00B"),
        ]
        results = shared_sandbox.upload_files(files)
        assert [r.path for r in results] == [p for p, _ in files], "one result per file, in order"
        assert results[0].error is None and results[3].error is None
        assert results[1].error == "invalid_path"
        assert results[2].error in FILE_ERROR_KINDS, f"a failed file reports an error kind, got {results[2].error!r}"
        assert shared_sandbox.read_file(f"{root}/a.txt") == b"A", "one failure must not stop the others"
        assert shared_sandbox.read_file(f"{root}/sub/b.bin") == b"\x00B"

    def test_download_files_reports_each_file(self, shared_sandbox: Sandbox) -> None:
        present, missing = _tmp("present"), _tmp("missing")
        shared_sandbox.write_file(present, b"\x00present")
        results = shared_sandbox.download_files([present, missing, "relative.txt", "/tmp"])
        assert [r.path for r in results] == [present, missing, "relative.txt", "/tmp"]
        assert (results[0].content, results[0].error) == (b"\x00present", None)
        assert (results[1].content, results[1].error) == (None, "file_not_found")
        assert (results[2].content, results[2].error) == (None, "invalid_path")
        assert (results[3].content, results[3].error) == (None, "is_directory")

    def test_empty_batches(self, shared_sandbox: Sandbox) -> None:
        assert shared_sandbox.upload_files([]) == []
        assert shared_sandbox.download_files([]) == []


class TestInitialFiles:
    """``initial_files=`` are in place before the first command; a bad one fails the create cleanly."""

    def test_initial_files_are_in_place(self, sandboxes: SandboxPool) -> None:
        files: dict[str, str | bytes] = {
            "/sbkc/app/main.py": 'print("hi")\n',
            "/sbkc/app/blob.bin": b"\x00\x01\xff",
            "/sbkc/deep/a/b/c.txt": "ünï",
        }
        sandbox = sandboxes.create(initial_files=files)
        for path, content in files.items():
            expected = content.encode() if isinstance(content, str) else content
            assert sandbox.read_file(path) == expected
        assert sandbox.execute("cat /sbkc/app/main.py").stdout == 'print("hi")\n'

    def test_a_failing_initial_file_fails_the_create_and_leaves_nothing(self, conformance: ConformanceTarget) -> None:
        labels = probe_labels()
        with expect_error(ErrorCode.SANDBOX_CREATION_FAILED, "initial_files that cannot be written (onto /etc)"):
            conformance.create(initial_files={"/etc": "not a directory"}, labels=labels)
        assert_nothing_left(conformance, labels, "a create failed on its initial files")
