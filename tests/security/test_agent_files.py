"""File calls on kernel filesystems and large files, on the agent path and the archive path (issue #11, item 9).

Writes under /proc and /sys fail (the archive API used to "succeed" into a hidden file under the
procfs mount); reads there see the live file on both paths; a large read holds the file about once.
"""

from __future__ import annotations

import contextlib
import hashlib
import tracemalloc
from collections.abc import Iterator
from typing import Any

import docker.errors
import pytest

import sandboxkit
from sandboxkit import ErrorCode, SandboxError

pytestmark = pytest.mark.docker

PATHS = ("agent", "archive")


@contextlib.contextmanager
def on(sb: sandboxkit.Sandbox, path: str) -> Iterator[None]:
    """Run the block's file calls through the agent, or through Docker's archive API."""
    fast = sb.handle.fast  # type: ignore[attr-defined]
    if path == "agent":
        for _ in range(3):
            sb.execute(["true"])
        assert fast.mux is not None and fast.mux.hello is not None, fast.disabled
        yield
        return
    fast.disabled = "switched off by the test"
    try:
        yield
    finally:
        fast.disabled = None


@pytest.mark.parametrize("path", PATHS)
def test_writes_under_proc_and_sys_fail_and_hide_nothing(
    docker_engine: Any, sandbox: sandboxkit.Sandbox, path: str
) -> None:
    before = sandbox.execute("cat /proc/sys/kernel/hostname").stdout
    with on(sandbox, path):
        for target in ("/proc/sys/kernel/hostname", "/sys/kernel/new-file", "/proc/new/dir/file", "/proc"):
            with pytest.raises(SandboxError) as err:
                sandbox.write_file(target, "pwned\n")
            assert err.value.code == ErrorCode.FILE_OPERATION_FAILED
            assert "kernel filesystem" in err.value.message
        results = sandbox.upload_files([("/tmp/ok", "fine"), ("/sys/x", "no"), ("/tmp/ok2", "fine")])
        assert [r.error for r in results] == [None, "permission_denied", None]
    assert sandbox.execute("cat /proc/sys/kernel/hostname").stdout == before
    assert sandbox.read_file("/tmp/ok2") == b"fine"
    for hidden in ("/proc/sys/kernel/hostname", "/sys/kernel/new-file", "/proc/new"):
        with pytest.raises(docker.errors.NotFound):  # nothing landed in the layer under the mounts
            docker_engine.api.get_archive(sandbox.id, hidden)


def test_reads_under_proc_agree_on_both_paths(sandbox: sandboxkit.Sandbox) -> None:
    live = sandbox.execute(["cat", "/proc/1/environ", "/proc/1/cmdline"]).stdout_bytes
    seen = {}
    for path in PATHS:
        with on(sandbox, path):
            seen[path] = sandbox.read_file("/proc/1/environ") + sandbox.read_file("/proc/1/cmdline")
            with pytest.raises(SandboxError) as err:
                sandbox.read_file("/proc/no-such-entry")
            assert err.value.code == ErrorCode.FILE_OPERATION_FAILED
    assert seen["agent"] == seen["archive"] == live
    assert b"PATH=" in live


@pytest.mark.parametrize("path", PATHS)
def test_reading_a_200_mib_file_holds_it_about_once(sandbox: sandboxkit.Sandbox, path: str) -> None:
    size = 200 << 20
    sandbox.execute(f"head -c {size} /dev/urandom > /big", check=True, timeout=120)
    with on(sandbox, path):
        tracemalloc.start()
        try:
            data = sandbox.read_file("/big")
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    assert len(data) == size
    assert sandbox.execute("sha256sum /big").stdout.split()[0] == hashlib.sha256(data).hexdigest()
    assert peak < size * 1.3 + (24 << 20), f"peak {peak / size:.2f}x the file on the {path} path"
