"""The three contenders of the benchmarks, each behind the same small surface.

Every method runs one operation through the library's own public API and returns the seconds it
took; work that is not measured (closing what a create made, preparing host files) happens
outside the timed part. ``sandboxkit`` is the library under test, ``docker-py`` the floor (what
a careful user would write by hand), ``llm-sandbox`` the peer.
"""

from __future__ import annotations

import concurrent.futures
import functools
import io
import os
import tarfile
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

IMAGE = os.environ.get("SANDBOXKIT_BENCH_IMAGE", "sandboxkit/base:bookworm")
#: Long enough for a full run (about 15 minutes on 2 busy cores) with room to spare.
LIFETIME = 7200
#: One label on every container a benchmark run creates, so the run can sweep exactly its own.
RUN_LABEL_KEY = "sandboxkit.label.bench"
STREAM_COMMAND = "head -c 104857600 /dev/zero"
STREAM_BYTES = 100 << 20
FILE_PATH = "/tmp/bench.bin"
#: The port the url_first_byte server listens on inside the sandbox.
SERVER_PORT = 8000
SERVER = ["python3", "-m", "http.server", str(SERVER_PORT)]


def first_byte(url: str, seconds: float = 30.0) -> bytes:
    """GET ``url`` until it answers (bounded); its first byte."""
    import urllib.error
    import urllib.request

    deadline = time.monotonic() + seconds
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                return bytes(response.read(1))
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.01)


def _timed(func: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    value = func()
    return time.perf_counter() - start, value


def _parallel(jobs: list[Callable[[], Any]], workers: int | None = None) -> list[Any]:
    with concurrent.futures.ThreadPoolExecutor(max_workers=workers or max(len(jobs), 1)) as pool:
        return list(pool.map(lambda job: job(), jobs))


class Client:
    """What every contender offers to the benchmark."""

    name = ""

    def setup(self) -> None:
        """Create the warm sandboxes the per-operation figures reuse."""

    def teardown(self) -> None:
        """Close the warm sandboxes."""

    def create_start(self) -> float:
        raise NotImplementedError

    def exec_true(self) -> float:
        raise NotImplementedError

    def full_cycle(self, data: bytes, host_file: Path) -> float:
        raise NotImplementedError

    def upload(self, data: bytes, host_file: Path) -> float:
        raise NotImplementedError

    def download(self, size: int) -> float:
        raise NotImplementedError

    def stream(self) -> float:
        raise NotImplementedError

    def create_concurrent(self, n: int) -> float:
        raise NotImplementedError


# ---------------------------------------------------------------------------------------- docker-py
class DockerPy(Client):
    """Raw docker-py, written the way its docs suggest: the floor every ratio is measured against."""

    name = "docker-py"

    def __init__(self, run_id: str) -> None:
        import docker

        self.client = docker.from_env(max_pool_size=64)
        self.labels = {RUN_LABEL_KEY: run_id}
        self.warm: Any = None

    def _create(self) -> Any:
        container = self.client.containers.create(
            IMAGE, entrypoint=["sleep"], command=[str(LIFETIME)], init=True, detach=True, labels=self.labels
        )
        container.start()
        return container

    @staticmethod
    def _remove(container: Any) -> None:
        container.remove(force=True)

    def setup(self) -> None:
        self.warm = self._create()
        self.served = self.client.containers.create(
            IMAGE,
            entrypoint=["sleep"],
            command=[str(LIFETIME)],
            init=True,
            detach=True,
            labels=self.labels,
            ports={f"{SERVER_PORT}/tcp": ("127.0.0.1",)},
        )
        self.served.start()
        self.served.reload()

    def teardown(self) -> None:
        for container in (self.warm, getattr(self, "served", None)):
            if container is not None:
                self._remove(container)

    def create_start(self) -> float:
        seconds, container = _timed(self._create)
        self._remove(container)
        return seconds

    def exec_true(self) -> float:
        return _timed(lambda: self.warm.exec_run(["true"]))[0]

    @staticmethod
    def _tar(path: str, data: bytes) -> bytes:
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tar:
            info = tarfile.TarInfo(os.path.basename(path))
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        return buf.getvalue()

    @staticmethod
    def _untar(chunks: Any) -> bytes:
        with tarfile.open(fileobj=io.BytesIO(b"".join(chunks)), mode="r:") as tar:
            member = tar.next()
            assert member is not None
            extracted = tar.extractfile(member)
            assert extracted is not None
            return extracted.read()

    def _cycle(self, data: bytes) -> None:
        container = self._create()
        try:
            container.exec_run(["echo", "hi"])
            container.put_archive(os.path.dirname(FILE_PATH), self._tar(FILE_PATH, data))
            stream, _ = container.get_archive(FILE_PATH)
            assert self._untar(stream) == data
        finally:
            self._remove(container)

    def full_cycle(self, data: bytes, host_file: Path) -> float:
        return _timed(lambda: self._cycle(data))[0]

    def upload(self, data: bytes, host_file: Path) -> float:
        return _timed(lambda: self.warm.put_archive(os.path.dirname(FILE_PATH), self._tar(FILE_PATH, data)))[0]

    def download(self, size: int) -> float:
        seconds, got = _timed(lambda: self._untar(self.warm.get_archive(FILE_PATH, chunk_size=1 << 20)[0]))
        assert len(got) == size
        return float(seconds)

    def stream(self) -> float:
        def run() -> int:
            total = 0
            for out, err in self.warm.exec_run(["sh", "-c", STREAM_COMMAND], stream=True, demux=True).output:
                total += len(out or b"") + len(err or b"")
            return total

        seconds, total = _timed(run)
        assert total == STREAM_BYTES
        return float(seconds)

    def snapshot_restore(self) -> float:
        """Commit the warm container, start a container from the image, run a command in it."""

        def restore() -> Any:
            image = self.warm.commit(repository="sbk-bench-snapshot", tag=uuid.uuid4().hex[:12])
            container = self.client.containers.create(
                image.id, entrypoint=["sleep"], command=[str(LIFETIME)], init=True, detach=True, labels=self.labels
            )
            container.start()
            container.exec_run(["true"])
            return image, container

        seconds, (image, container) = _timed(restore)
        self._remove(container)
        self.client.images.remove(image.id, force=True)
        return float(seconds)

    def url_first_byte(self) -> float:
        """Start a web server in a container with a published port; time until its first byte arrives here."""
        port = self.served.attrs["NetworkSettings"]["Ports"][f"{SERVER_PORT}/tcp"][0]["HostPort"]

        def serve() -> bytes:
            self.served.exec_run(SERVER, detach=True)
            return first_byte(f"http://127.0.0.1:{port}/")

        seconds, _ = _timed(serve)
        self.served.exec_run(["pkill", "-KILL", "-f", "http.server"])
        return float(seconds)

    def create_concurrent(self, n: int) -> float:
        seconds, made = _timed(lambda: _parallel([self._create] * n))
        _parallel([functools.partial(self._remove, c) for c in made], workers=8)
        return float(seconds)


# ---------------------------------------------------------------------------------------- sandboxkit
class Sandboxkit(Client):
    """sandboxkit's blocking ``Sandbox`` (its async twin for the concurrent figures)."""

    name = "sandboxkit"
    provider = "docker"
    #: whether the provider declares PORTS (the url_first_byte figure's served sandbox)
    ports = True

    def __init__(self, run_id: str) -> None:
        os.environ["SANDBOXKIT_LABELS"] = f"bench={run_id}"
        import sandboxkit

        self.sk = sandboxkit
        self.warm: Any = None
        self.warm_plain: Any = None

    def _create(self) -> Any:
        return self.sk.Sandbox.create(provider=self.provider, image=IMAGE, timeout=LIFETIME)

    def setup(self) -> None:
        self.warm = self._create()
        if self.ports:
            self.served = self.sk.Sandbox.create(
                provider=self.provider, image=IMAGE, timeout=LIFETIME, ports=[SERVER_PORT]
            )
        if self.provider == "docker":
            with _env("SANDBOXKIT_DOCKER_FAST_EXEC", "0"):
                self.warm_plain = self._create()  # commands go through plain docker exec
        for sandbox in (self.warm, self.warm_plain):
            for _ in range(3 if sandbox is not None else 0):
                sandbox.execute(["true"])

    def teardown(self) -> None:
        for sandbox in (self.warm, self.warm_plain, getattr(self, "served", None)):
            if sandbox is not None:
                sandbox.close()

    def spawn_first_output(self) -> float:
        """Spawn ``echo hi`` in the background and read its first output."""

        def first() -> str:
            process = self.warm.spawn(["echo", "hi"])
            return next(iter(process.stream())).text

        seconds, text = _timed(first)
        assert text == "hi\n"
        return float(seconds)

    def execute_echo(self) -> float:
        seconds, result = _timed(lambda: self.warm.execute(["echo", "hi"]))
        assert result.stdout == "hi\n"
        return float(seconds)

    def snapshot_restore(self) -> float:
        """Snapshot the warm sandbox, start a sandbox from it, run a command in it."""

        def restore() -> Any:
            snap = self.warm.snapshot(ttl=LIFETIME)
            sandbox = self.sk.Sandbox.create(provider=self.provider, snapshot=snap, timeout=LIFETIME)
            sandbox.execute(["true"])
            return snap, sandbox

        seconds, (snap, sandbox) = _timed(restore)
        sandbox.close()
        snap.delete()
        return float(seconds)

    def url_first_byte(self) -> float:
        """Spawn a web server in a sandbox with ``ports=``; time until its first byte arrives at ``url``."""

        def serve() -> Any:
            process = self.served.spawn(SERVER)
            self.served.wait_for_port(SERVER_PORT, timeout=30)
            first_byte(self.served.url(SERVER_PORT))
            return process

        seconds, process = _timed(serve)
        process.kill("KILL")
        process.wait(timeout=30)
        return float(seconds)

    def create_start(self) -> float:
        seconds, sandbox = _timed(self._create)
        sandbox.close()
        return float(seconds)

    def exec_true(self) -> float:
        return _timed(lambda: self.warm.execute(["true"]))[0]

    def exec_true_docker_exec(self) -> float:
        return _timed(lambda: self.warm_plain.execute(["true"]))[0]

    def _cycle(self, data: bytes) -> None:
        with self._create() as sandbox:
            sandbox.execute(["echo", "hi"])
            sandbox.write_file(FILE_PATH, data)
            assert sandbox.read_file(FILE_PATH) == data

    def full_cycle(self, data: bytes, host_file: Path) -> float:
        return _timed(lambda: self._cycle(data))[0]

    def upload(self, data: bytes, host_file: Path) -> float:
        return _timed(lambda: self.warm.write_file(FILE_PATH, data))[0]

    def download(self, size: int) -> float:
        seconds, got = _timed(lambda: self.warm.read_file(FILE_PATH))
        assert len(got) == size
        return float(seconds)

    def stream(self) -> float:
        def run() -> int:
            return sum(len(chunk.data) for chunk in self.warm.stream(STREAM_COMMAND))

        seconds, total = _timed(run)
        assert total == STREAM_BYTES
        return float(seconds)

    def create_concurrent(self, n: int) -> float:
        import anyio

        async def main() -> float:
            made: list[Any] = []

            async def one() -> None:
                made.append(await self.sk.AsyncSandbox.create(provider=self.provider, image=IMAGE, timeout=LIFETIME))

            start = time.perf_counter()
            async with anyio.create_task_group() as tg:
                for _ in range(n):
                    tg.start_soon(one)
            seconds = time.perf_counter() - start
            async with anyio.create_task_group() as tg:
                for sandbox in made:
                    tg.start_soon(sandbox.close)
            return seconds

        return anyio.run(main)


class SandboxkitExecute(Sandboxkit):
    """sandboxkit's ``execute``, as the baseline of ``spawn_first_output``."""

    name = "sandboxkit-execute"

    def setup(self) -> None:
        self.warm = self._create()
        self.warm.execute(["true"])

    def spawn_first_output(self) -> float:
        return self.execute_echo()


class SandboxkitModal(Sandboxkit):
    """sandboxkit's Modal provider, through the project's Modal emulator (Docker underneath).

    Compared with provider "docker", it shows what Modal's API shape (gRPC control plane, task
    command router) costs on top of the same containers.
    """

    name = "sandboxkit-modal"
    provider = "modal"

    def __init__(self, run_id: str) -> None:
        super().__init__(run_id)
        from sandboxkit_modal.emulator import EmulatorProcess

        home = Path(tempfile.mkdtemp(prefix="sbk-bench-modal-"))
        os.environ["MODAL_CONFIG_PATH"] = str(home / "no-modal-config.toml")  # keep ~/.modal.toml out
        self.emulator = EmulatorProcess(env={"XDG_CONFIG_HOME": str(home)})
        os.environ.update(self.emulator.env)

    def teardown(self) -> None:
        try:
            super().teardown()
        finally:
            self.emulator.stop()


class SandboxkitUnhardened(Sandboxkit):
    """sandboxkit's Docker provider as it was before the hardened defaults: Docker's default
    capabilities, no no-new-privileges, no default CPU or memory cap (patched off per call, so the
    other contenders in this process are untouched)."""

    name = "sandboxkit-unhardened"

    def _create(self) -> Any:
        from unittest import mock

        from sandboxkit_docker import _security, provider

        with (
            mock.patch.object(_security, "container_kwargs", lambda *a: {}),
            mock.patch.object(provider, "default_cpu", lambda ncpu: None),
            mock.patch.object(provider, "default_memory_mib", lambda total: None),
        ):
            return super()._create()

    def setup(self) -> None:
        self.warm = self._create()
        for _ in range(3):
            self.warm.execute(["true"])


class SandboxkitRunsc(SandboxkitUnhardened):
    """sandboxkit's Docker provider with ``runtime="runsc"`` (gVisor), hardened defaults on."""

    name = "sandboxkit-runsc"

    def __init__(self, run_id: str) -> None:
        super().__init__(run_id)
        import docker

        client = docker.from_env()
        try:
            if "runsc" not in (client.info().get("Runtimes") or {}):
                raise RuntimeError("the Docker engine has no runsc runtime (scripts/setup.sh registers it)")
        finally:
            client.close()

    def _create(self) -> Any:
        return self.sk.Sandbox.create(
            provider="docker", image=IMAGE, timeout=LIFETIME, provider_options={"runtime": "runsc"}
        )


class SandboxkitBwrap(Sandboxkit):
    """sandboxkit's bwrap provider: no daemon, the same image kept as a rootfs directory.

    Compared with provider "docker": what namespaces over an overlay, a supervisor process and
    nsenter per command cost against containers.
    """

    name = "sandboxkit-bwrap"
    provider = "bwrap"
    ports = False

    def __init__(self, run_id: str) -> None:
        from sandboxkit_bwrap import _host

        host = _host.probe()
        if isinstance(host, str):
            raise RuntimeError(host)
        super().__init__(run_id)
        self.run_id = run_id

    def teardown(self) -> None:
        try:
            super().teardown()
        finally:
            for info in self.sk.Sandbox.list(provider="bwrap", labels={"bench": self.run_id}):
                self.sk.Sandbox.from_id(info.id, provider="bwrap").close()


# ---------------------------------------------------------------------------------------- llm-sandbox
class LlmSandbox(Client):
    """llm-sandbox's SandboxSession with the offline settings of research/peer-bench.md B."""

    name = "llm-sandbox"

    def __init__(self, run_id: str) -> None:
        from llm_sandbox import SandboxSession  # type: ignore[import-untyped]

        self.session_type = SandboxSession
        self.labels = {RUN_LABEL_KEY: run_id}
        self.warm: Any = None
        self.tmp = Path(tempfile.mkdtemp(prefix="sbk-bench-llm-"))

    def _open(self) -> Any:
        session = self.session_type(
            backend="docker",
            image=IMAGE,
            lang="python",
            keep_template=True,
            skip_environment_setup=True,
            verbose=False,
            runtime_configs={"command": ["sleep", str(LIFETIME)], "init": True, "labels": dict(self.labels)},
        )
        session.open()
        return session

    def setup(self) -> None:
        self.warm = self._open()

    def teardown(self) -> None:
        if self.warm is not None:
            self.warm.close()

    def create_start(self) -> float:
        seconds, session = _timed(self._open)
        session.close()
        return float(seconds)

    def exec_true(self) -> float:
        return _timed(lambda: self.warm.execute_command("true"))[0]

    def _cycle(self, data: bytes, host_file: Path) -> None:
        session = self._open()
        try:
            session.execute_command("echo hi")
            session.copy_to_runtime(str(host_file), FILE_PATH)
            out = self.tmp / "cycle.bin"
            session.copy_from_runtime(FILE_PATH, str(out))
            assert out.read_bytes() == data
        finally:
            session.close()

    def full_cycle(self, data: bytes, host_file: Path) -> float:
        return _timed(lambda: self._cycle(data, host_file))[0]

    def upload(self, data: bytes, host_file: Path) -> float:
        return _timed(lambda: self.warm.copy_to_runtime(str(host_file), FILE_PATH))[0]

    def download(self, size: int) -> float:
        out = self.tmp / "download.bin"
        seconds, _ = _timed(lambda: self.warm.copy_from_runtime(FILE_PATH, str(out)))
        assert out.stat().st_size == size
        out.unlink()
        return float(seconds)

    def stream(self) -> float:
        total = 0

        def count(text: str) -> None:
            nonlocal total
            total += len(text)

        seconds, _ = _timed(lambda: self.warm.execute_command(STREAM_COMMAND, on_stdout=count))
        assert total == STREAM_BYTES
        return float(seconds)

    def create_concurrent(self, n: int) -> float:
        seconds, made = _timed(lambda: _parallel([self._open] * n))
        _parallel([s.close for s in made], workers=8)
        return float(seconds)


@contextmanager
def _env(key: str, value: str) -> Iterator[None]:
    old = os.environ.get(key)
    os.environ[key] = value
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = old


class SandboxkitNoWarden(Sandboxkit):
    """sandboxkit with the Docker provider's warden off: the baseline of the warden's cost."""

    name = "sandboxkit-nowarden"

    def create_start(self) -> float:
        with _env("SANDBOXKIT_DOCKER_WARDEN", "off"):
            return super().create_start()


def make(name: str, run_id: str) -> Client:
    """The contender called ``name``."""
    kinds: dict[str, Callable[[str], Client]] = {
        "sandboxkit": Sandboxkit,
        "sandboxkit-nowarden": SandboxkitNoWarden,
        "sandboxkit-modal": SandboxkitModal,
        "sandboxkit-unhardened": SandboxkitUnhardened,
        "sandboxkit-runsc": SandboxkitRunsc,
        "sandboxkit-execute": SandboxkitExecute,
        "sandboxkit-bwrap": SandboxkitBwrap,
        "docker-py": DockerPy,
        "llm-sandbox": LlmSandbox,
    }
    return kinds[name](run_id)


# ---------------------------------------------------------------------------------------- live sandboxes
def _close(session: Any) -> None:
    session.close()


def rss_mib() -> float:
    """This process's resident memory now, in MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def live(name: str, run_id: str, n: int) -> dict[str, float]:
    """In a fresh process: create ``n`` sandboxes at once (timed), run one command in each, read RSS."""
    if name == "sandboxkit":
        return _live_sandboxkit(run_id, n)
    client = make(name, run_id)
    opener: Callable[[], Any] = client._create if isinstance(client, DockerPy) else client._open  # type: ignore[attr-defined]
    seconds, made = _timed(lambda: _parallel([opener] * n))
    if isinstance(client, DockerPy):
        _parallel([functools.partial(c.exec_run, ["echo", "hi"]) for c in made], workers=8)
    else:
        _parallel([functools.partial(s.execute_command, "echo hi") for s in made], workers=8)
    rss = rss_mib()
    closer: Callable[[Any], None] = DockerPy._remove if isinstance(client, DockerPy) else _close
    _parallel([functools.partial(closer, x) for x in made], workers=8)
    return {"create_s": float(seconds), "rss_mib": rss}


def _live_sandboxkit(run_id: str, n: int) -> dict[str, float]:
    import anyio

    Sandboxkit(run_id)  # sets the run label
    import sandboxkit

    async def main() -> dict[str, float]:
        made: list[Any] = []

        async def one() -> None:
            made.append(await sandboxkit.AsyncSandbox.create(provider="docker", image=IMAGE, timeout=LIFETIME))

        start = time.perf_counter()
        async with anyio.create_task_group() as tg:
            for _ in range(n):
                tg.start_soon(one)
        seconds = time.perf_counter() - start
        limiter = anyio.CapacityLimiter(8)

        async def run(sandbox: Any) -> None:
            async with limiter:
                await sandbox.execute(["echo", "hi"])

        async with anyio.create_task_group() as tg:
            for sandbox in made:
                tg.start_soon(run, sandbox)
        rss = rss_mib()
        async with anyio.create_task_group() as tg:
            for sandbox in made:
                tg.start_soon(sandbox.close)
        return {"create_s": seconds, "rss_mib": rss}

    return anyio.run(main)
