"""Client side of the fast exec path: commands go to one agent per sandbox over one attached stream.

``docker exec`` costs three daemon round trips and a runc exec per command (~40 ms here). The
agent (:mod:`sandboxkit_docker._agent`) is started once per sandbox by a single ``docker exec``
with stdin attached; after that a command is one frame in and a few frames out on the same
hijacked socket, multiplexed by channel id, so many commands run at once on one sandbox.

The agent is started lazily: the first command of a sandbox runs through ``docker exec``; the
second too, while the agent starts beside it; later commands use the agent. Everything the agent
cannot do goes through :class:`~sandboxkit_docker._exec.ExecEngine` (plain ``docker exec``):
images without ``python3`` >= 3.9 (busybox), ``user=`` when the agent cannot switch users (not
root, or no CAP_SETUID/CAP_SETGID), transports that are not plain sockets, sandboxes with less
than :data:`MIN_MEMORY` of memory (the agent's ~10 MiB would count against it),
``SANDBOXKIT_DOCKER_FAST_EXEC=0``, and a sandbox whose agent died :data:`MAX_RESTARTS` times.

Reading the socket needs no background task: whichever command is waiting and finds no reader
becomes the reader until its own channel has news, then hands over (:meth:`Mux.wait`).
"""

from __future__ import annotations

import collections
import importlib.resources
import io
import json
import os
import secrets
import socket
import threading
import uuid
from typing import Any

import anyio

from sandboxkit.spi import ExecExit, ExecRequest, OutputCallback, StreamName
from sandboxkit_docker import _agent, _dockerpy, _threads
from sandboxkit_docker._agent import COUNT, HEADER
from sandboxkit_docker._errors import translate
from sandboxkit_docker._exec import _KILL, MARKER, ExecEngine
from sandboxkit_docker._frames import STDERR, STDOUT, FrameSplitter

#: Set to 0/false/off to run every command through plain ``docker exec``.
ENV_SWITCH = "SANDBOXKIT_DOCKER_FAST_EXEC"
#: Below this memory limit the agent is not started.
MIN_MEMORY = 256 << 20
#: How often an agent may die in one sandbox before the sandbox stays on ``docker exec``.
MAX_RESTARTS = 3
#: The command (1-based) beside which the agent starts: a sandbox that runs a single command
#: never pays for it; one that runs more pays once, beside its second command.
LAUNCH_AT = 2
#: How long to wait for a starting agent's HELLO.
START_TIMEOUT = 10.0
#: How long past a command's timeout the client waits for the agent to report the kill itself.
CLIENT_GRACE = 5.0
#: Longest wait to write one frame to the agent before its stream counts as wedged.
SEND_TIMEOUT = 30.0
#: Longest a file read or write through the agent may take before the archive API does it instead.
TRANSFER_TIMEOUT = 300.0
#: Stdin bytes in flight per command before the client waits for the agent's acknowledgement.
STDIN_WINDOW = 1 << 20
_STDIN_CHUNK = 256 << 10
_ACK_EVERY = _agent.WINDOW // 4
#: Most output bytes of one channel the client holds unacknowledged: the agent's window, plus what
#: it drains from two full pipes past the window at a command's end. More means a forged stream.
MAX_UNACKED = _agent.WINDOW + 2 * _agent.MAX_FRAME
_KINDS = frozenset({_agent.HELLO, _agent.STDOUT, _agent.STDERR, _agent.EXIT, _agent.STDIN_ACK})
_RECV = 1 << 20
_STREAMS: dict[int, StreamName] = {_agent.STDOUT: "stdout", _agent.STDERR: "stderr"}

#: Kills a wedged (stopped) agent by pid; its reapers then kill what their commands still run.
_KILL_AGENT = 'read -r c < /proc/{pid}/comm 2>/dev/null && [ "$c" = sbk-exec-agent ] && kill -9 {pid}; true'

#: Runs in the sandbox as ``python3 -I -S -c LOADER <source length> <config json>``: it reads the
#: agent's source from stdin (so the process list shows no code) and runs it.
LOADER = (
    "#sandboxkit-exec-agent\n"
    "import os,sys\n"
    "if sys.version_info<(3,9):sys.exit(3)\n"
    "import ctypes\n"
    "if ctypes.CDLL(None).prctl(4,0,0,0,0):sys.exit(5)\n"  # PR_SET_DUMPABLE 0 first: /proc/<pid>/fd closes
    "n=int(sys.argv[1]);b=b''\n"
    "while len(b)<n:\n"
    " c=os.read(0,n-len(b))\n"
    " if not c:sys.exit(4)\n"
    " b+=c\n"
    "exec(compile(b,'sandboxkit-exec-agent','exec'),{'__name__':'__main__','CONFIG_JSON':sys.argv[2]})\n"
)


def agent_source() -> bytes:
    """The agent's source as sent to the sandbox: the reaper module, then the agent module."""
    package = importlib.resources.files("sandboxkit_docker")
    agent = package.joinpath("_agent.py").read_bytes().replace(b"from __future__ import annotations\n", b"", 1)
    return package.joinpath("_reaper.py").read_bytes() + b"\n" + agent


def enabled_by_env() -> bool:
    """False when ``SANDBOXKIT_DOCKER_FAST_EXEC`` turns the fast path off."""
    return os.environ.get(ENV_SWITCH, "1").strip().lower() not in ("0", "false", "off", "no")


class AgentLost(Exception):
    """The agent's stream ended or stopped answering while a command was in flight."""


class Channel:
    """One command's inbox: output chunks, stdin acknowledgements, and its exit."""

    def __init__(self, cid: int) -> None:
        self.id = cid
        self.chunks: collections.deque[tuple[StreamName, bytes]] = collections.deque()
        self.exit: dict[str, Any] | None = None
        self.stdin_acked = 0
        #: output bytes received and not yet acknowledged to the agent
        self.unacked = 0
        self.changed = anyio.Event()

    def notify(self) -> None:
        event, self.changed = self.changed, anyio.Event()
        event.set()


class Mux:
    """The attached stream to one agent: frames out under a lock, frames in by whoever waits."""

    def __init__(self, sock: Any, raw: socket.socket, exec_id: str, token: str) -> None:
        self.sock, self.raw, self.exec_id = sock, raw, exec_id
        #: the agent's own marker (commands get theirs), so a lost agent can be killed like a command
        self.token = token
        self.thread = threading.get_ident()
        self.control = Channel(0)
        self.channels: dict[int, Channel] = {0: self.control}
        self.hello: dict[str, Any] | None = None
        self.dead: str | None = None
        self.reading = False
        self._docker = FrameSplitter()
        self._frames = bytearray()
        self._stderr = bytearray()
        self._write = anyio.Lock(fast_acquire=True)

    # ------------------------------------------------------------ channels
    def open(self) -> Channel:
        """A channel with an unguessable id: a stream forged from inside cannot aim at another command."""
        cid = 0
        while cid == 0 or cid in self.channels:
            cid = secrets.randbits(32)
        channel = self.channels[cid] = Channel(cid)
        return channel

    async def release(self, channel: Channel, *, finished: bool) -> None:
        """Forget the channel; if its work did not finish (cancelled, timed out), have the agent end it."""
        self.channels.pop(channel.id, None)
        if not finished and self.dead is None:  # a command must not outlive its call, nor a temporary file
            with anyio.CancelScope(shield=True):
                try:
                    await self.send(_agent.KILL, channel.id)
                except AgentLost:
                    pass

    # ------------------------------------------------------------ writing
    async def send(self, kind: int, cid: int, payload: bytes = b"") -> None:
        await self.send_raw(HEADER.pack(kind, cid, len(payload)) + payload)

    async def send_raw(self, data: bytes) -> None:
        if self.dead is not None:
            raise AgentLost(self.dead)
        async with self._write:
            # a frame cut short by a cancellation would corrupt the stream for every command:
            # once started, it is written whole (or the stream is given up)
            with anyio.CancelScope(shield=True), anyio.move_on_after(SEND_TIMEOUT) as limit:
                view = memoryview(data)
                while view:
                    try:
                        sent = self.raw.send(view)
                    except (BlockingIOError, InterruptedError):
                        try:
                            await anyio.wait_writable(self.raw)
                        except (anyio.ClosedResourceError, OSError):
                            self.lose("the agent's stream was closed")
                            raise AgentLost(self.dead) from None
                        continue
                    except OSError as exc:
                        self.lose(f"the agent's stream failed ({exc})")
                        raise AgentLost(self.dead) from None
                    view = view[sent:]
            if limit.cancelled_caught:
                self.lose(f"the agent took no input for {SEND_TIMEOUT:g}s")
                raise AgentLost(self.dead)

    # ------------------------------------------------------------ reading
    async def wait(self, channel: Channel) -> None:
        """Return once ``channel`` has news or the stream is gone; read the socket if nobody else does."""
        event = channel.changed
        while not event.is_set() and self.dead is None:
            if self.reading:
                await event.wait()
                continue
            self.reading = True
            try:
                while not event.is_set() and self.dead is None:
                    if not self._receive():
                        try:
                            await anyio.wait_readable(self.raw)
                        except (anyio.ClosedResourceError, OSError):
                            self.lose("the agent's stream was closed")
            finally:
                self.reading = False
                self._wake_all()  # another waiter takes over reading

    def _receive(self) -> bool:
        try:
            data = self.raw.recv(_RECV)
        except (BlockingIOError, InterruptedError):
            return False
        except OSError:
            data = b""
        if not data:
            self.lose("the agent's stream closed" + self._stderr_note())
            return True
        self._docker.feed(data, self._on_frame)
        self._dispatch()
        return True

    def _on_frame(self, stream: int, payload: memoryview) -> None:
        if stream == STDOUT:
            self._frames += payload
        elif stream == STDERR:
            self._stderr = (self._stderr + payload)[-2000:]

    def _dispatch(self) -> None:
        buf = self._frames
        pos = 0
        with memoryview(buf) as view:
            while len(buf) - pos >= HEADER.size and self.dead is None:
                kind, cid, length = HEADER.unpack_from(view, pos)
                if self.hello is None and (kind != _agent.HELLO or length > 4096):
                    # what came instead is not repeated: it may be anything a process in the sandbox wrote
                    self.lose(f"the agent did not start (its stream began with {len(buf)} unexpected bytes)")
                    return
                if kind not in _KINDS or length > _agent.MAX_FRAME:
                    self.lose(f"the agent's stream is malformed (frame kind {kind}, {length} bytes)")
                    return
                end = pos + HEADER.size + length
                if end > len(buf):
                    break
                payload = bytes(view[pos + HEADER.size : end])
                pos = end
                problem = self._deliver(kind, cid, payload)
                if problem:
                    self.lose(f"the agent's stream is malformed ({problem})")
                    return
        del buf[:pos]

    def _deliver(self, kind: int, cid: int, payload: bytes) -> str:
        """Hand one frame to its channel; what is wrong with it, or "" (frames for no channel are dropped)."""
        if kind == _agent.HELLO:
            if self.hello is not None:
                return "a second HELLO"
            hello = _json_object(payload)
            if hello is None:
                return "HELLO is not a JSON object"
            self.hello = hello
            self.control.notify()
            return ""
        channel = self.channels.get(cid)
        if channel is None or channel is self.control:
            return ""
        if kind in _STREAMS:
            channel.unacked += len(payload)
            if channel.unacked > MAX_UNACKED:
                return f"{channel.unacked} bytes past the window"
            channel.chunks.append((_STREAMS[kind], payload))
        elif kind == _agent.EXIT:
            result = _json_object(payload)
            if result is None or type(result.get("code")) is not int or channel.exit is not None:
                return "a bad EXIT"
            channel.exit = result
        elif kind == _agent.STDIN_ACK:
            if len(payload) != COUNT.size:
                return "a bad STDIN_ACK"
            channel.stdin_acked += COUNT.unpack(payload)[0]
        channel.notify()
        return ""

    def _stderr_note(self) -> str:
        text = bytes(self._stderr).decode(errors="replace").strip()
        return f" ({text.splitlines()[-1]})" if text else ""

    def _wake_all(self) -> None:
        for channel in list(self.channels.values()):
            channel.notify()

    def lose(self, reason: str) -> None:
        """Mark the stream gone, close it, and wake every waiter."""
        if self.dead is None:
            self.dead = reason
            self.close()
            self._wake_all()

    def close(self) -> None:
        try:  # wake whoever waits on the socket (on this thread's loop) before it goes away
            if threading.get_ident() == self.thread:
                anyio.notify_closing(self.raw)
        except RuntimeError:  # no event loop running here
            pass
        for closer in (getattr(self.sock, "close", None), self.raw.close):
            try:
                if closer is not None:
                    closer()
            except OSError:
                pass


class FastExec:
    """Runs a sandbox's commands through its agent, or through ``docker exec`` where the agent cannot."""

    def __init__(self, engine: ExecEngine, *, memory: int, env: list[str] | None) -> None:
        """``memory``: the sandbox's limit in bytes (0: none); ``env``: its config env, or None to look it up later."""
        self.engine = engine
        self.mux: Mux | None = None
        self.restarts = 0
        self.commands = 0
        self.launching = False
        #: the sandbox is being closed by this handle: commands that end abnormally now were cut off
        self.closed = False
        #: (marker token, user) of processes a lost stream left running, killed once docker answers again
        self.pending_kills: list[tuple[str, str | None]] = []
        self.disabled: str | None = None if enabled_by_env() else f"{ENV_SWITCH} is off"
        if self.disabled is None and 0 < memory < MIN_MEMORY:
            self.disabled = f"the sandbox's memory limit is below {MIN_MEMORY >> 20} MiB"
        self.config = None if env is None else _agent_config(env)

    async def run(self, request: ExecRequest, on_output: OutputCallback) -> ExecExit:
        """Run one command, through the agent when it can take it."""
        if self.pending_kills:
            await self._kill_pending()
        if self.disabled is not None:
            return await self.engine.run(request, on_output)
        mux = self.mux
        if mux is None or mux.dead is not None:
            if mux is not None:
                self._retire(mux, restart=True)
            self.commands += 1
            if self.disabled is not None or self.commands < LAUNCH_AT or self.launching:
                return await self.engine.run(request, on_output)
            self.launching = True  # one launch at a time, however many commands start together
            failure: Exception | None = None
            async with anyio.create_task_group() as tg:  # start the agent beside this command
                tg.start_soon(self._launch)
                try:
                    outcome = await self.engine.run(request, on_output)
                except Exception as exc:  # raised after the group, so it is not wrapped in a group
                    failure = exc
            if failure is not None:
                raise failure
            return outcome
        if mux.thread != threading.get_ident() or not await self._ready(mux):
            return await self.engine.run(request, on_output)
        assert mux.hello is not None
        if request.user and not mux.hello.get("can_switch_user"):
            return await self.engine.run(request, on_output)
        return await self._run_on(mux, request, on_output)

    # ------------------------------------------------------------ files
    def transfer_agent(self) -> Mux | None:
        """The agent, when it is up and runs as root (the archive API reads and writes as root)."""
        mux = self.mux
        if self.disabled is not None or mux is None or mux.dead is not None or mux.thread != threading.get_ident():
            return None
        return mux if mux.hello is not None and mux.hello.get("uid") == 0 else None

    async def read_file(self, path: str) -> bytes | None:
        """The file's bytes through a running agent; None when the archive API should answer instead."""
        mux = self.transfer_agent()
        if mux is None:
            return None
        buffer = io.BytesIO()  # its getvalue() hands over its own buffer: the file is held once

        async def collect(stream: StreamName, data: bytes) -> None:
            buffer.write(data)

        ok = await self._transfer(mux, {"file": "read", "path": path}, None, collect)
        return buffer.getvalue() if ok else None

    async def write_file(self, path: str, data: bytes) -> bool:
        """Write the file through a running agent; False when the archive API should do it instead."""
        mux = self.transfer_agent()
        return mux is not None and await self._transfer(mux, {"file": "write", "path": path}, data, None)

    async def _transfer(
        self, mux: Mux, spec: dict[str, str], stdin: bytes | None, on_output: OutputCallback | None
    ) -> bool:
        channel = mux.open()
        done = False
        try:
            await mux.send(_agent.OPEN, channel.id, json.dumps(spec).encode())
            with anyio.move_on_after(TRANSFER_TIMEOUT):
                if stdin is not None:
                    await _feed(mux, channel, stdin)
                done = await _pump(mux, channel, on_output or _discard)
            if mux.dead is not None:
                raise AgentLost(mux.dead)
        except AgentLost:  # the next command starts a new agent; this transfer goes to the archive API
            self._retire(mux, restart=True)
            return False
        finally:
            await mux.release(channel, finished=done)
        return done and channel.exit is not None and channel.exit.get("code") == 0

    def close(self) -> None:
        """Drop the agent's stream (the agent kills what it still runs and exits); the sandbox is closing."""
        self.closed = True
        if self.mux is not None:
            self.mux.lose("closed")
            self.mux = None

    # ------------------------------------------------------------ agent lifecycle
    async def _launch(self) -> None:
        try:
            with anyio.CancelScope(shield=True):
                await self._start_agent()
        finally:
            self.launching = False

    async def _start_agent(self) -> None:
        """One docker exec of the loader with stdin attached, then the agent's source down the stream."""
        source = agent_source()
        api, container_id = self.engine.api, self.engine.container_id
        token = "agent-" + uuid.uuid4().hex

        def start() -> tuple[Any, str]:
            with translate(sandbox_id=container_id):
                if self.config is None:  # a new sandbox's handle holds no inspect document
                    self.config = _agent_config(api.inspect_container(container_id)["Config"].get("Env") or [])
                argv = ["python3", "-I", "-S", "-c", LOADER, str(len(source)), json.dumps(self.config)]
                created = api.exec_create(container_id, argv, stdin=True, user="", environment={MARKER: token})
                return api.exec_start(created["Id"], socket=True), created["Id"]

        try:
            sock, exec_id = await _threads.run_sync(start)
        except Exception:  # the sandbox is gone or docker refused: this command's own path reports it
            return
        raw = _dockerpy.raw_socket(sock)
        if type(raw) is not socket.socket:  # TLS or ssh transports: stay on docker exec
            self.disabled = "the Docker transport is not a plain socket"
            _close_quietly(sock)
            return
        raw.setblocking(False)
        mux = Mux(sock, raw, exec_id, token)
        try:
            await mux.send_raw(source)
        except AgentLost:
            return
        if self.closed:  # closed while the agent started
            mux.lose("closed")
            return
        self.mux = mux

    async def _ready(self, mux: Mux) -> bool:
        """Wait for the agent's HELLO; False (and the right bookkeeping) when it does not come."""
        if mux.hello is None:
            with anyio.move_on_after(START_TIMEOUT):
                while mux.hello is None and mux.dead is None:
                    await mux.wait(mux.control)
            if mux.hello is None:  # no python3 >= 3.9, or it hung: this sandbox stays on docker exec
                self.disabled = mux.dead or "the agent did not answer"
                self._retire(mux, restart=False)
                return False
            if mux.hello.get("protocol") != _agent.PROTOCOL:
                self.disabled = "the agent speaks another protocol"
                self._retire(mux, restart=False)
                return False
        return mux.dead is None

    async def _kill_pending(self) -> None:
        """Kill, through docker exec, what lost streams left behind; keep what docker could not reach."""
        api, container_id = self.engine.api, self.engine.container_id

        def kill(token: str, user: str | None) -> bool:
            script = _KILL_AGENT.format(pid=token[4:]) if token.startswith("pid:") else _KILL.format(token=token)
            try:
                created = api.exec_create(container_id, ["sh", "-c", script], user=user or "")
                api.exec_start(created["Id"])
                return bool(api.exec_inspect(created["Id"]).get("ExitCode") == 0)
            except Exception as exc:  # a gone sandbox has nothing left to kill
                return "no such container" in str(exc).lower() or "is not running" in str(exc).lower()

        left = []
        for token, user in self.pending_kills:
            if not await _threads.run_sync(kill, token, user):
                left.append((token, user))
        self.pending_kills = left

    def _retire(self, mux: Mux, *, restart: bool) -> None:
        mux.lose(mux.dead or "retired")
        if self.mux is mux:
            self.mux = None
        if restart:
            self.restarts += 1
            if self.restarts >= MAX_RESTARTS:
                self.disabled = f"the agent died {self.restarts} times"

    # ------------------------------------------------------------ one command
    async def _run_on(self, mux: Mux, request: ExecRequest, on_output: OutputCallback) -> ExecExit:
        token = uuid.uuid4().hex
        spec = {
            "argv": list(request.argv),
            "env": {**self.engine.base_env(), **request.env, MARKER: token},
            "cwd": request.cwd,
            "user": request.user,
            "timeout": request.timeout,
            "stdin": request.stdin is not None,
            "marker": f"{MARKER}={token}",
        }
        channel = mux.open()
        done = wedged = False
        try:
            await mux.send(_agent.OPEN, channel.id, json.dumps(spec).encode())
            failure: Exception | None = None
            async with anyio.create_task_group() as tg:
                if request.stdin is not None:
                    tg.start_soon(_feed, mux, channel, request.stdin)
                limit = None if request.timeout is None else request.timeout + CLIENT_GRACE
                with anyio.move_on_after(limit) as deadline:
                    try:
                        done = await _pump(mux, channel, on_output)
                    except Exception as exc:  # the consumer failed: raised after the group, unwrapped
                        failure = exc
                tg.cancel_scope.cancel()
            if failure is not None:
                raise failure
            if not done:
                wedged = deadline.cancelled_caught
                raise AgentLost(mux.dead or "the agent did not report a timed-out command")
        except AgentLost:
            # the agent died (killed from inside, OOM, sandbox gone) or hangs: kill the command
            # through docker exec and report it killed; the next command starts a new agent
            done = True
            self._retire(mux, restart=True)
            if mux.hello is not None:  # the agent is non-dumpable: the marker kill cannot see it, its pid can;
                # first, so its reapers (parent-death signal) kill their commands' whole trees
                self.pending_kills.append((f"pid:{int(mux.hello.get('pid') or 0)}", None))
            self.pending_kills += [(token, request.user), (mux.token, None)]
            with anyio.CancelScope(shield=True):
                await self._kill_pending()
            return ExecExit(exit_code=137, timed_out=wedged)
        finally:
            await mux.release(channel, finished=done)
        assert channel.exit is not None
        return ExecExit(exit_code=int(channel.exit["code"]), timed_out=bool(channel.exit.get("timed_out")))


async def _pump(mux: Mux, channel: Channel, on_output: OutputCallback) -> bool:
    """Hand the channel's output on in order until its exit arrives (True) or the stream dies (False)."""
    unacked = 0
    while True:
        while channel.chunks:
            stream, data = channel.chunks.popleft()
            await on_output(stream, data)
            unacked += len(data)
            if unacked >= _ACK_EVERY:
                try:
                    await mux.send(_agent.ACK, channel.id, COUNT.pack(unacked))
                except AgentLost:
                    return False
                channel.unacked -= unacked
                unacked = 0
        if channel.exit is not None:
            return True
        if mux.dead is not None:
            return False
        await mux.wait(channel)


async def _feed(mux: Mux, channel: Channel, data: bytes) -> None:
    """Send stdin within the window, then EOF."""
    view = memoryview(data)
    sent = 0
    try:
        while view:
            if channel.exit is not None or mux.dead is not None:  # nobody is left to read the rest
                return
            room = STDIN_WINDOW - (sent - channel.stdin_acked)
            if room <= 0:
                await mux.wait(channel)
                continue
            n = min(len(view), _STDIN_CHUNK, room)
            await mux.send(_agent.STDIN, channel.id, bytes(view[:n]))
            sent += n
            view = view[n:]
        await mux.send(_agent.STDIN_EOF, channel.id)
    except AgentLost:
        return


def _json_object(payload: bytes) -> dict[str, Any] | None:
    try:
        value = json.loads(payload)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def _agent_config(env: list[str]) -> dict[str, Any]:
    """What the agent needs to know of the container's config: whether it sets HOME (then ``user=`` keeps it)."""
    return {"home_in_config": any(str(e).startswith("HOME=") for e in env)}


async def _discard(stream: StreamName, data: bytes) -> None:
    """Output nobody wants (a write has none)."""


def _close_quietly(sock: Any) -> None:
    try:
        sock.close()
    except OSError:
        pass
