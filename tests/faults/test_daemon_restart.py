"""The Docker daemon restarted mid-session: a clear error while it is down, then recovery without a new client.

Recovery means the same client (provider, docker-py client, Sandbox objects) works again: a new
sandbox can be created and used, and the old one either answers again (its container survived)
or says SANDBOX_NOT_FOUND (Docker < 24 removes auto-removed containers on a live-restore
restart, moby/moby#46308).

Restarting the shared daemon would break every other test on the machine (and CI's), so this test
starts a private ``dockerd`` of its own: its own socket, data root and exec root (and so its own
containerd), inside its own network and mount namespaces (``unshare``), so neither its mounts nor
its network set-up touch the host. (Without the network namespace, ``--bridge none`` would delete
the host's ``docker0``.) It runs with ``--live-restore``, so containers outlive the daemon, as on
production hosts. The sandboxkit under test reaches it through ``DOCKER_HOST``, like any user.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import pytest
from fault_helpers import host_processes_naming

import sandboxkit
from sandboxkit import ErrorCode, SandboxError

pytestmark = pytest.mark.docker

IMAGE = "sandboxkit/base:bookworm"


class PrivateDaemon:
    """A throwaway dockerd in its own namespaces, started and stopped at will."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.url = f"unix://{root}/docker.sock"
        self.log = open(root / "dockerd.log", "ab")  # noqa: SIM115 - closed in cleanup()
        self.holder = subprocess.Popen(
            ["unshare", "--net", "--mount", "--fork", "sleep", "infinity"], start_new_session=True
        )
        self.proc: subprocess.Popen[bytes] | None = None
        self._await_namespaces()

    def _await_namespaces(self) -> None:
        """Wait until the holder really is in namespaces of its own (unshare(2) runs after exec).

        A dockerd started in the host's network namespace with ``--bridge none`` would delete the
        host's docker0, so nothing starts until this holds.
        """
        deadline = time.monotonic() + 10
        while True:
            try:
                own = all(
                    os.readlink(f"/proc/{self.holder.pid}/ns/{ns}") != os.readlink(f"/proc/self/ns/{ns}")
                    for ns in ("net", "mnt")
                )
            except OSError:
                own = False
            if own:
                return
            if self.holder.poll() is not None or time.monotonic() > deadline:
                pytest.fail("could not make private namespaces with unshare (needs root)", pytrace=False)
            time.sleep(0.02)

    def client(self) -> docker.DockerClient:
        return docker.DockerClient(base_url=self.url, timeout=30)

    def start(self) -> None:
        self._await_namespaces()
        argv = [
            "nsenter", "-t", str(self.holder.pid), "--net", "--mount",
            "dockerd", "--host", self.url,
            "--data-root", str(self.root / "data"), "--exec-root", str(self.root / "exec"),
            "--pidfile", str(self.root / "docker.pid"),
            "--bridge", "none", "--iptables=false", "--ip-masq=false", "--ip-forward=false", "--live-restore",
        ]  # fmt: skip
        self.proc = subprocess.Popen(argv, stdout=self.log, stderr=self.log, start_new_session=True)
        deadline = time.monotonic() + 60
        while True:
            try:
                with contextlib.closing(docker.DockerClient(base_url=self.url, timeout=2)) as c:
                    c.ping()
                return
            except Exception:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    tail = (self.root / "dockerd.log").read_text(errors="replace")[-2000:]
                    pytest.fail(f"the private dockerd did not start:\n{tail}", pytrace=False)
                time.sleep(0.25)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(60)
        self.proc = None

    def cleanup(self) -> None:
        with contextlib.suppress(Exception):
            if self.proc is None:
                self.start()
            with contextlib.closing(self.client()) as c:
                for row in c.api.containers(all=True):
                    c.api.remove_container(row["Id"], force=True)
        self.stop()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.holder.pid, signal.SIGKILL)
        self.holder.wait(30)
        self.log.close()
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture(scope="module")
def private_daemon(docker_engine: Any) -> Iterator[PrivateDaemon]:
    for tool in ("dockerd", "unshare", "nsenter"):
        if shutil.which(tool) is None:
            pytest.fail(f"this test needs {tool} (docker.io and util-linux); run scripts/setup.sh", pytrace=False)
    root = Path(tempfile.mkdtemp(prefix="sbkd-", dir="/tmp"))  # short: unix socket paths are limited
    daemon = PrivateDaemon(root)
    try:
        daemon.start()
        tar = root / "image.tar"
        # its own client: the session's answers within 5 s, an image export on a loaded machine may not
        with contextlib.closing(docker.from_env(timeout=300)) as shared, tar.open("wb") as f:
            for chunk in shared.images.get(IMAGE).save(named=True):
                f.write(chunk)
        with contextlib.closing(daemon.client()) as c, tar.open("rb") as f:
            c.images.load(f)
        tar.unlink()
        yield daemon
    finally:
        daemon.cleanup()
        left = host_processes_naming({str(root)})
        assert not left, f"the private daemon left processes behind: {left}"


@pytest.fixture
def on_private_daemon(private_daemon: PrivateDaemon, monkeypatch: Any) -> Iterator[PrivateDaemon]:
    """Point sandboxkit at the private daemon: DOCKER_HOST, and a fresh provider that reads it."""
    monkeypatch.setenv("DOCKER_HOST", private_daemon.url)
    monkeypatch.setenv("SANDBOXKIT_DOCKER_WARDEN", "off")  # this test is about the client; no warden there
    sandboxkit.reset_providers()
    yield private_daemon
    sandboxkit.reset_providers()  # the next test's provider talks to the shared engine again


def test_daemon_restart_mid_session(on_private_daemon: PrivateDaemon) -> None:
    daemon = on_private_daemon
    sb = sandboxkit.Sandbox.create(provider="docker", image=IMAGE, timeout=300, block_network=True)
    try:
        for _ in range(3):
            sb.execute(["true"])  # the fast path is up
        outcome: list[BaseException | sandboxkit.ExecResult] = []
        worker = threading.Thread(target=lambda: outcome.append(_call(sb.execute, "sleep 20; echo late")))
        worker.start()
        time.sleep(1.0)

        daemon.stop()
        worker.join(20)
        assert not worker.is_alive(), "a command in flight hung when the daemon went away"
        (in_flight,) = outcome
        assert isinstance(in_flight, SandboxError), in_flight
        assert in_flight.code == ErrorCode.PROVIDER_UNAVAILABLE, in_flight
        start = time.monotonic()
        with pytest.raises(SandboxError) as err:
            sb.execute("echo while down")
        assert err.value.code == ErrorCode.PROVIDER_UNAVAILABLE
        assert "did not answer" in err.value.message
        assert "DOCKER_HOST" in err.value.message
        assert time.monotonic() - start < 10

        daemon.start()
        try:
            survived = sb.execute("echo back").stdout == "back\n"  # the same client
        except SandboxError as exc:
            # Docker < 24 removes auto-removed containers when a live-restore daemon restarts
            # (moby/moby#46308), so the sandbox is gone: said clearly, at once
            assert exc.code == ErrorCode.SANDBOX_NOT_FOUND, exc
            survived = False
        if survived:
            for _ in range(2):
                assert sb.execute("echo again").stdout == "again\n"
            ps = sb.execute("ps -eo comm,args --no-headers").stdout
            assert "sleep 20" not in ps, ps  # what the lost stream left running was killed
            assert ps.count("sbk-exec-agent") == 1, ps  # and so was the old agent
        with sandboxkit.Sandbox.create(provider="docker", image=IMAGE, timeout=60, block_network=True) as other:
            for _ in range(3):  # the same provider and client serve a new sandbox, fast path included
                assert other.execute("echo new").stdout == "new\n"
            assert other.handle.fast.mux is not None  # type: ignore[attr-defined]
    finally:
        sb.close()
    with contextlib.closing(daemon.client()) as c:
        assert c.api.containers(all=True) == []


def _call(func: Any, *args: Any) -> Any:
    try:
        return func(*args)
    except BaseException as exc:
        return exc
