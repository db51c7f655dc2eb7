"""The in-sandbox side of the fast exec path: one process per sandbox that runs many commands.

The client starts it with one ``docker exec`` of ``python3 -I -S -c LOADER N`` with stdin
attached; the loader reads this file's source (N bytes) from stdin and runs it. From then on
the agent speaks framed messages on its stdin and stdout (see :data:`HEADER`): the client opens
a channel per command, the agent spawns it, streams its stdout and stderr back in arrival order
and reports its exit. It needs no network and nothing but the image's own ``python3`` (standard
library only, Python 3.9 or newer), and holds no secret: each command's environment arrives with
its OPEN message and goes to that command alone.

Guarantees it keeps, the same as the ``docker exec`` path:

* per-call timeout, abandonment and the client's going away kill the command's whole tree:
  each command runs below its own child subreaper (:mod:`sandboxkit_docker._reaper`), so
  ``setsid``, double forks and ``env -i`` do not take a process out of it; the agent is a
  subreaper too and kills every orphan that reaches it from a reaper that was killed;
* a channel nothing in the sandbox can touch: the agent is non-dumpable (the loader makes it so
  before anything else), so ``/proc/<pid>/fd``, ``mem`` and ``environ`` are closed to processes
  without CAP_SYS_PTRACE, even root's; at start it kills any process that already holds one of
  its stdio pipes; commands inherit none of its fds;
* stdin (exact bytes, then EOF), env, cwd, user (name, uid, ``user:group``, with Docker's
  group and HOME rules), exit code (``128 + signal`` when killed), output order;
* flow control both ways: the agent reads a command's output only while the client has
  acknowledged enough of it, and acknowledges stdin as the command consumes it, so neither
  side buffers more than a window per command;
* when the client goes away (stdin EOF), every command still running is killed.

It also moves whole files (:class:`Transfer`) over the same channels, with the same windows: a
read streams a regular file as output, a write takes stdin into a temporary file renamed into
place. Only the plain case is done here; anything else (a symlink or a directory at the path, any
error) is declined, and the client falls back to Docker's archive API, which decides.

This module is also imported by the client for its protocol constants; it does nothing on import.
"""

from __future__ import annotations

import collections
import fcntl
import grp
import json
import os
import pwd
import select
import signal
import stat
import struct
import time
from typing import Any

try:  # in the sandbox the reaper's source runs first, in the same namespace
    from sandboxkit_docker._reaper import (
        Reaper,
        become_private,
        become_subreaper,
        kill_tree,
        prepare,
        start_error,
        strays,
    )
except ImportError:  # pragma: no cover - only inside the sandbox
    pass

#: Frame header: message kind, channel id, payload length.
HEADER = struct.Struct(">BII")
#: client -> agent. OPEN carries a JSON command spec; ACK and STDIN_ACK carry a ">Q" byte count.
OPEN, STDIN, STDIN_EOF, KILL, ACK = 1, 2, 3, 4, 5
#: agent -> client. HELLO (channel 0) and EXIT carry JSON.
HELLO, STDOUT, STDERR, EXIT, STDIN_ACK = 16, 17, 18, 19, 20
COUNT = struct.Struct(">Q")
PROTOCOL = 1
#: Output bytes of one command the agent sends before the client must acknowledge some.
WINDOW = 8 << 20
#: The agent stops reading commands' output while this much waits to be written to the client.
MAX_PENDING = 4 << 20
#: After a command's main process exits, how long its background children may keep its
#: output open before the agent stops reading (Docker's exec waits the same 2 s).
EXIT_GRACE = 2.0
#: The agent's process name (``/proc/<pid>/comm``), which the idle watchdog looks for.
COMM = "sbk-exec-agent"
#: Exit code when a command cannot be started (Docker's exec reports 126 too).
CANNOT_RUN = 126
#: Idle reapers kept for the next commands (more are let go); reapers forked ahead at most.
MAX_IDLE, MAX_REAPERS = 4, 256
#: Largest payload of any frame, either way; a longer announced length is a broken or forged stream.
MAX_FRAME = (1 << 20) + 65536
_READ = 1 << 20
_F_SETPIPE_SZ = 1031


def resolve_user(spec: str) -> tuple[int, int, list[int], str]:
    """``name``, ``uid``, ``name:group`` or ``uid:gid`` -> (uid, gid, supplementary gids, home), as Docker does.

    Like ``docker exec``: the supplementary groups are the primary group plus the user's
    memberships in /etc/group, or just the given group; an unknown numeric uid gets gid 0, HOME /.
    """
    name, _, group = spec.partition(":")
    try:
        entry: Any = pwd.getpwuid(int(name)) if name.isdigit() else pwd.getpwnam(name)
    except KeyError:
        entry = None
    if entry is None:
        if not name.isdigit():
            raise LookupError(f"unable to find user {name}: no matching entries in passwd file")
        uid, gid, home, login = int(name), 0, "/", ""
    else:
        uid, gid, home, login = entry.pw_uid, entry.pw_gid, entry.pw_dir, entry.pw_name
    extra: list[int] = []
    if group:
        if group.isdigit():
            gid = int(group)
        else:
            try:
                gid = grp.getgrnam(group).gr_gid
            except KeyError:
                raise LookupError(f"unable to find group {group}: no matching entries in group file") from None
    elif login:
        extra = [g.gr_gid for g in grp.getgrall() if login in g.gr_mem]
    return uid, gid, sorted({gid, *extra}), home


def can_switch_user() -> bool:
    """Whether commands can run as other users: root with CAP_SETGID and CAP_SETUID."""
    if os.geteuid() != 0:
        return False
    try:
        with open("/proc/self/status") as f:
            caps = next(int(line.split()[1], 16) for line in f if line.startswith("CapEff:"))
    except (OSError, StopIteration, ValueError):
        return False
    return (caps >> 6) & 3 == 3


def evict_holders() -> None:
    """Kill every other process that holds one of this process's stdio pipes.

    Once the agent is non-dumpable nobody can open them any more; this ends whoever did in the
    moment before (processes that hide their fds, being non-dumpable themselves, are not seen).
    """
    mine = set()
    for fd in (0, 1, 2):
        try:
            st = os.fstat(fd)
            mine.add((st.st_dev, st.st_ino))
        except OSError:
            pass
    me = os.getpid()
    deadline = time.monotonic() + 2.0
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == me or time.monotonic() > deadline:
            continue
        try:
            names = os.listdir(f"/proc/{entry}/fd")
        except OSError:
            continue
        for name in names:
            try:
                st = os.stat(f"/proc/{entry}/fd/{name}")
            except OSError:
                continue
            if (st.st_dev, st.st_ino) in mine:
                try:
                    os.kill(int(entry), signal.SIGKILL)
                except OSError:
                    pass
                break


class Command:
    """One running command: its reaper, its pipes, its exit."""

    reaper: Reaper | None
    outputs: dict[int, int]  # fd -> STDOUT/STDERR
    files: dict[int, Any]  # fd -> its file object, closed with it (plain fds are closed directly)
    stdin_fd: int | None
    returncode: int | None
    exited_at: float | None
    deadline: float | None

    def __init__(self, agent: Agent, cid: int, spec: dict[str, Any]) -> None:
        self._init_state(agent, cid, spec)
        argv = [str(a) for a in spec["argv"]]
        cwd = spec.get("cwd")
        try:
            self._start(argv, cwd, spec)
        except Exception as exc:  # the command could not start: report it as docker exec does
            self.fail_to_start(start_error(argv[0], cwd, exc))

    def _init_state(self, agent: Agent, cid: int, spec: dict[str, Any]) -> None:
        """What every channel's work keeps: output credit, stdin buffer, exit, deadline."""
        self.agent, self.cid = agent, cid
        self.timed_out = False
        self.killed = False
        self.exited_at = None
        self.credit = WINDOW
        self.stdin_buf = bytearray()
        self.stdin_eof = False
        self.reaper = None
        self.outputs = {}
        self.files = {}
        self.stdin_fd = None
        self.returncode = None
        timeout = spec.get("timeout")
        self.deadline = None if timeout is None else time.monotonic() + float(timeout)

    def _start(self, argv: list[str], cwd: str | None, spec: dict[str, Any]) -> None:
        env = dict(self.agent.base_env)
        sent: dict[str, str] = spec.get("env") or {}
        ids = None
        user = spec.get("user")
        if user:
            uid, gid, groups, home = resolve_user(str(user))
            ids = (uid, gid, groups)
            if not self.agent.config.get("home_in_config") and "HOME" not in sent:
                env["HOME"] = home
        env.update(sent)
        ours: list[int] = []
        theirs: list[int] = []  # the command's ends of its pipes, closed here once the reaper holds them
        try:
            for _ in range(3 if spec.get("stdin") else 2):
                r, w = os.pipe()
                ours.append(r if len(ours) < 2 else w)
                theirs.append(w if len(theirs) < 2 else r)
            stdin = theirs[2] if len(theirs) > 2 else None
            for attempt in (1, 2):
                reaper = self.agent.reaper()
                try:
                    reaper.start(argv, env=env, cwd=cwd, user=ids, stdio=(stdin, theirs[0], theirs[1]))
                    break
                except OSError:  # it did not take the command (stopped or killed from inside): a new one does
                    self.agent.drop(reaper)
                    if attempt == 2:
                        raise
        except BaseException:
            for fd in ours:
                os.close(fd)
            raise
        finally:
            for fd in theirs:
                os.close(fd)
        reaper.owner = self
        self.reaper = reaper
        self.outputs = {ours[0]: STDOUT, ours[1]: STDERR}
        self.stdin_fd = ours[2] if len(ours) > 2 else None
        for fd in ours:
            os.set_blocking(fd, False)
        for fd in self.outputs:
            try:
                fcntl.fcntl(fd, _F_SETPIPE_SZ, _READ)
            except OSError:
                pass

    def fail_to_start(self, message: str) -> None:
        self.agent.send(STDOUT, self.cid, (message + "\r\n").encode())
        self.returncode = CANNOT_RUN
        self.exited_at = time.monotonic()

    def on_report(self, kind: str, value: Any) -> None:
        """The reaper reported the command's end, or that it could not start, or died (which ends it too)."""
        if self.returncode is not None:
            return
        if kind == "error":
            self.fail_to_start(value)
            return
        if kind == "lost":  # killed from inside the sandbox: what it ran is killed too
            self.kill(timed_out=self.timed_out)
        code = int(value)
        self.returncode = 128 - code if code < 0 else code
        self.exited_at = time.monotonic()

    # ------------------------------------------------------------ output
    def read(self, fd: int, limit: int) -> None:
        try:
            data = os.read(fd, limit)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self.close_output(fd)
            return
        self.credit -= len(data)
        self.agent.send(self.outputs[fd], self.cid, data)

    def close_output(self, fd: int) -> None:
        if self.outputs.pop(fd, None) is not None:
            self.agent.forget(fd)
            self.close_fd(fd)

    def close_fd(self, fd: int) -> None:
        file = self.files.pop(fd, None)
        try:
            if file is not None:
                file.close()
            else:
                os.close(fd)
        except OSError:  # unflushed data to a command that exited: nothing to flush it to
            pass

    def drain(self) -> None:
        """Send whatever is already in the pipes, ignoring the window (at most a pipe's worth)."""
        for fd in list(self.outputs):
            while fd in self.outputs:
                try:
                    data = os.read(fd, _READ)
                except (BlockingIOError, OSError):
                    break
                if not data:
                    self.close_output(fd)
                    break
                self.agent.send(self.outputs[fd], self.cid, data)

    # ------------------------------------------------------------ stdin
    def feed(self, data: bytes) -> None:
        if self.stdin_fd is None:
            self.agent.send(STDIN_ACK, self.cid, COUNT.pack(len(data)))
            return
        self.stdin_buf += data
        self.write_stdin()

    def write_stdin(self) -> None:
        fd = self.stdin_fd
        if fd is None:
            return
        written = 0
        while self.stdin_buf:
            try:
                n = os.write(fd, self.stdin_buf[:_READ])
            except BlockingIOError:
                break
            except OSError:  # the command closed its stdin: drop the rest
                n = len(self.stdin_buf)
                self.close_stdin()
            written += n
            del self.stdin_buf[:n]
        if written:
            self.agent.send(STDIN_ACK, self.cid, COUNT.pack(written))
        if self.stdin_eof and not self.stdin_buf:
            self.close_stdin()

    def end_stdin(self) -> None:
        self.stdin_eof = True
        if not self.stdin_buf:
            self.close_stdin()

    def close_stdin(self) -> None:
        fd, self.stdin_fd = self.stdin_fd, None
        if fd is not None:
            self.agent.forget(fd)
            self.close_fd(fd)

    # ------------------------------------------------------------ ending
    def kill(self, timed_out: bool) -> None:
        """Kill the command's whole tree: its reaper and everything below it."""
        if self.killed or self.reaper is None:
            return
        self.killed, self.timed_out = True, timed_out
        if self.reaper.owner is self:  # an idle reaper (nothing left below it) may run another command now
            self.agent.kill_tree({self.reaper.pid})

    def poll(self) -> None:
        """Nothing to poll: the reaper's report arrives through :meth:`Agent.hear`."""

    def finished(self, now: float) -> bool:
        if self.returncode is None:
            return False
        return not (self.outputs and self.exited_at is not None and now - self.exited_at < EXIT_GRACE)

    def finish(self) -> None:
        self.drain()
        for fd in list(self.outputs):
            self.close_output(fd)
        self.close_stdin()
        code = 137 if self.timed_out else self.returncode
        self.agent.send(EXIT, self.cid, json.dumps({"code": code, "timed_out": self.timed_out}).encode())


def make_parents(path: str) -> None:
    """Create ``path`` and its missing parents as the archive API does: root-owned, 0755."""
    missing = []
    while not os.path.lexists(path):
        missing.append(path)
        path = os.path.dirname(path)
    for directory in reversed(missing):
        os.mkdir(directory, 0o755)
        os.chmod(directory, 0o755)


class Transfer(Command):
    """A whole-file read or write on a channel: a file fd stands in for the command's pipes.

    Read: the file (symlinks followed, regular files only) is streamed as STDOUT. Write: STDIN
    goes to a fresh file beside ``path`` (root-owned, 0644, like the archive API's), renamed over
    ``path`` at EOF; ``path`` must be absent or a regular file, and missing parents are created. The
    EXIT frame says ``{"code": 0}``, or ``{"code": 1, "declined": reason}`` for the client to fall
    back to the archive API.
    """

    def __init__(self, agent: Agent, cid: int, spec: dict[str, Any]) -> None:
        self._init_state(agent, cid, spec)  # a transfer's spec has no timeout
        self.declined = ""
        self.path = str(spec["path"])
        self.tmp: str | None = None
        try:
            if spec["file"] == "read":
                self._open_read()
            else:
                self._open_write()
        except OSError as exc:
            self.decline(exc.strerror or str(exc))

    def _open_read(self) -> None:
        fd = os.open(self.path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise OSError(0, "not a regular file")
        self.outputs = {fd: STDOUT}
        self.files = {fd: os.fdopen(fd, "rb", buffering=0)}

    def _open_write(self) -> None:
        try:
            if not stat.S_ISREG(os.lstat(self.path).st_mode):
                raise OSError(0, "not a regular file")
        except FileNotFoundError:
            pass
        parent = os.path.dirname(self.path) or "/"
        if not os.path.isdir(parent):
            make_parents(parent)
        self.tmp = os.path.join(parent, f".sbk-{os.getpid()}-{self.cid}-{os.urandom(4).hex()}.tmp")
        fd = os.open(self.tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        self.stdin_fd = fd
        self.files = {fd: os.fdopen(fd, "wb", buffering=0)}
        os.fchown(fd, 0, 0)
        os.fchmod(fd, 0o644)

    def decline(self, reason: str) -> None:
        self.declined = self.declined or reason or "declined"
        self.kill(timed_out=False)

    def read(self, fd: int, limit: int) -> None:
        try:
            data = os.read(fd, limit)
        except BlockingIOError:
            return
        except OSError as exc:
            self.decline(exc.strerror or str(exc))
            return
        if not data:
            self.close_output(fd)
            return
        self.credit -= len(data)
        self.agent.send(STDOUT, self.cid, data)

    def drain(self) -> None:
        """Nothing to drain: a file is read under the window only."""

    def write_stdin(self) -> None:
        fd = self.stdin_fd
        written = 0
        try:
            while fd is not None and self.stdin_buf:
                n = os.write(fd, self.stdin_buf[:_READ])
                written += n
                del self.stdin_buf[:n]
        except OSError as exc:  # EFBIG under max_file_mib, ENOSPC, EROFS...: the archive API decides
            self.decline(exc.strerror or str(exc))
        if written:
            self.agent.send(STDIN_ACK, self.cid, COUNT.pack(written))
        if self.stdin_eof and not self.stdin_buf and self.stdin_fd is not None:
            self.close_stdin()
            if self.tmp is not None and not self.declined:
                try:
                    os.rename(self.tmp, self.path)
                    self.tmp = None
                except OSError as exc:
                    self.decline(exc.strerror or str(exc))

    def end_stdin(self) -> None:
        self.stdin_eof = True
        self.write_stdin()

    def kill(self, timed_out: bool) -> None:
        self.killed = True
        for fd in list(self.outputs):
            self.close_output(fd)
        self.stdin_buf.clear()
        self.close_stdin()
        if self.tmp is not None:
            try:
                os.unlink(self.tmp)
            except OSError:
                pass
            self.tmp = None

    def poll(self) -> None:
        if self.returncode is None and (self.killed or (not self.outputs and self.stdin_fd is None)):
            self.returncode = 1 if self.declined or self.killed else 0

    def finished(self, now: float) -> bool:
        return self.returncode is not None

    def finish(self) -> None:
        result: dict[str, Any] = {"code": self.returncode}
        if self.returncode:
            result["declined"] = self.declined or "cancelled"
        self.agent.send(EXIT, self.cid, json.dumps(result).encode())


class Agent:
    """The event loop: frames in on fd 0, frames out on fd 1, one poll() over every pipe."""

    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config
        if not (become_private() and become_subreaper()):
            raise SystemExit(5)  # the client stays on docker exec
        self.reapers: dict[int, Reaper] = {}  # pid -> every live reaper
        self.idle: list[Reaper] = []  # those waiting for a command
        self.listening: dict[int, Reaper] = {}  # fd -> reaper, as last polled
        self.orphans_due = False
        evict_holders()
        try:  # the name the idle watchdog knows: the agent alone is not activity, its commands are
            with open("/proc/self/comm", "w") as comm:
                comm.write(COMM)
        except OSError:
            pass
        self.base_env = dict(os.environ)
        self.commands: dict[int, Command] = {}
        self.out: collections.deque[bytes] = collections.deque()  # frames to write, the first partly sent
        self.sent = 0
        self.pending = 0
        self.inbuf = bytearray()
        self.stdin_open = True
        self.poller = select.poll()
        self.registered: dict[int, int] = {}
        self.owner: dict[int, Command] = {}
        self.wake_r, self.wake_w = os.pipe()
        os.set_blocking(self.wake_r, False)
        os.set_blocking(self.wake_w, False)
        for fd in (0, 1):
            os.set_blocking(fd, False)
            try:  # bigger pipes to and from the client: fewer wake-ups per MiB
                fcntl.fcntl(fd, _F_SETPIPE_SZ, _READ)
            except OSError:
                pass
        signal.signal(signal.SIGCHLD, lambda *_: None)
        signal.set_wakeup_fd(self.wake_w, warn_on_full_buffer=False)

    def send(self, kind: int, cid: int, payload: bytes = b"") -> None:
        self.out.append(HEADER.pack(kind, cid, len(payload)) + payload)
        self.pending += HEADER.size + len(payload)

    def forget(self, fd: int) -> None:
        if self.registered.pop(fd, None) is not None:
            self.poller.unregister(fd)
        self.owner.pop(fd, None)

    def reaper(self) -> Reaper:
        """A reaper for the next command: an idle one still alive, or a new one."""
        while self.idle:
            reaper = self.idle.pop()
            self.hear(reaper)  # anything unread: it may have been killed from inside meanwhile
            if self.reapers.get(reaper.pid) is reaper and reaper.owner is None:
                if reaper in self.idle:
                    self.idle.remove(reaper)
                return reaper
        reaper = prepare()
        self.reapers[reaper.pid] = reaper
        return reaper

    def refill(self) -> None:
        """Keep one reaper ready, forked while nothing waits for it."""
        if not self.idle and self.stdin_open and len(self.reapers) < MAX_REAPERS:
            try:
                reaper = prepare()
            except OSError:  # no pid left: the next command forks its own (or reports why it cannot)
                return
            self.reapers[reaper.pid] = reaper
            self.idle.append(reaper)

    def drop(self, reaper: Reaper) -> None:
        """Forget a reaper (killed, lost, or one idle too many); it exits when its socket closes."""
        self.reapers.pop(reaper.pid, None)
        if reaper in self.idle:
            self.idle.remove(reaper)
        self.forget(reaper.fd)
        reaper.close()

    def hear(self, reaper: Reaper) -> None:
        """Read what a reaper reported; pass the command's end on; take it back when it is idle."""
        for kind, value in reaper.reports():
            command, lost = reaper.owner, kind == "lost"
            if command is not None and kind != "idle":
                command.on_report(kind, value)
            if lost or kind == "idle":
                reaper.owner = None
            if lost:
                self.drop(reaper)
                self.orphans_due = True
                return
            if kind == "idle":
                if len(self.idle) < MAX_IDLE:
                    self.idle.append(reaper)
                else:
                    self.drop(reaper)

    def kill_tree(self, roots: set[int]) -> None:
        """Kill ``roots`` and everything below them, then any orphan a killed reaper left here."""
        kill_tree(roots, reap=self.collect, keep=set(self.reapers) - roots)
        self.kill_strays()

    def collect(self) -> None:
        """Reap dead children; note when a reaper was among them (its orphans are now ours)."""
        while True:
            try:
                pid, _ = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            if pid in self.reapers:  # killed from inside, or by a kill: its command ends with it
                self.orphans_due = True
                self.hear(self.reapers[pid])

    def kill_strays(self) -> None:
        """Kill every child the agent did not start: a command's processes whose reaper was killed."""
        self.orphans_due = False
        for _ in range(5):
            found = strays(set(self.reapers))
            if not found:
                return
            kill_tree(found, reap=self.collect, keep=set(self.reapers))

    # ------------------------------------------------------------ messages in
    def handle(self, kind: int, cid: int, payload: bytes) -> None:
        if kind == OPEN:
            if cid not in self.commands:
                spec = json.loads(payload)
                self.commands[cid] = (Transfer if "file" in spec else Command)(self, cid, spec)
            return
        cmd = self.commands.get(cid)
        if kind == STDIN:
            if cmd is None:
                self.send(STDIN_ACK, cid, COUNT.pack(len(payload)))
            else:
                cmd.feed(payload)
        elif cmd is None:
            return
        elif kind == STDIN_EOF:
            cmd.end_stdin()
        elif kind == KILL:
            cmd.kill(timed_out=False)
        elif kind == ACK:
            cmd.credit += COUNT.unpack(payload)[0]

    def read_input(self) -> None:
        try:
            data = os.read(0, _READ)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self.stdin_open = False
            self.forget(0)
            return
        self.inbuf += data
        pos = 0
        while len(self.inbuf) - pos >= HEADER.size:
            kind, cid, length = HEADER.unpack_from(self.inbuf, pos)
            if length > MAX_FRAME:  # not the client's stream any more: stop taking it
                self.stdin_open = False
                self.forget(0)
                self.inbuf.clear()
                return
            end = pos + HEADER.size + length
            if end > len(self.inbuf):
                break
            self.handle(kind, cid, bytes(self.inbuf[pos + HEADER.size : end]))
            pos = end
        del self.inbuf[:pos]

    def flush(self) -> None:
        while self.out:
            head = self.out[0]
            try:
                n = os.write(1, memoryview(head)[self.sent :])
            except BlockingIOError:
                return
            except OSError:  # the client is gone
                self.out.clear()
                self.pending = 0
                self.stdin_open = False
                return
            self.sent += n
            self.pending -= n
            if self.sent == len(head):
                self.out.popleft()
                self.sent = 0

    # ------------------------------------------------------------ the loop
    def interest(self) -> None:
        wanted: dict[int, int] = {self.wake_r: select.POLLIN}
        self.owner = {}
        if self.stdin_open:
            wanted[0] = select.POLLIN
        if self.out:
            wanted[1] = select.POLLOUT
        room = self.pending < MAX_PENDING
        self.listening = {reaper.fd: reaper for reaper in self.reapers.values()}
        for reaper in self.reapers.values():
            wanted[reaper.fd] = select.POLLIN
        for cmd in self.commands.values():
            if room and cmd.credit > 0:
                for fd in cmd.outputs:
                    wanted[fd] = select.POLLIN
                    self.owner[fd] = cmd
            if cmd.stdin_fd is not None and cmd.stdin_buf:
                wanted[cmd.stdin_fd] = select.POLLOUT
                self.owner[cmd.stdin_fd] = cmd
        for fd in [fd for fd in self.registered if fd not in wanted]:
            self.poller.unregister(fd)
            del self.registered[fd]
        for fd, mask in wanted.items():
            if self.registered.get(fd) != mask:
                self.poller.register(fd, mask)
                self.registered[fd] = mask

    def timeout_ms(self) -> int | None:
        now = time.monotonic()
        times = [c.deadline for c in self.commands.values() if c.deadline is not None and not c.killed]
        times += [c.exited_at + EXIT_GRACE for c in self.commands.values() if c.exited_at is not None]
        if not times:
            return None
        return max(0, int((min(times) - now) * 1000) + 1)

    def run(self) -> None:
        hello = {"protocol": PROTOCOL, "uid": os.geteuid(), "pid": os.getpid(), "can_switch_user": can_switch_user()}
        self.send(HELLO, 0, json.dumps(hello).encode())
        while self.stdin_open or self.out:
            self.interest()
            for fd, _ in self.poller.poll(self.timeout_ms()):
                if fd == 0:
                    self.read_input()
                elif fd == 1:
                    self.flush()
                elif fd == self.wake_r:
                    try:
                        while os.read(self.wake_r, 512):
                            pass
                    except OSError:
                        pass
                elif fd in self.listening:
                    reaper = self.listening.pop(fd)
                    if self.reapers.get(reaper.pid) is reaper:  # not dropped meanwhile
                        self.hear(reaper)
                else:
                    cmd = self.owner.get(fd)
                    if cmd is None:
                        continue
                    if fd == cmd.stdin_fd:
                        cmd.write_stdin()
                    elif fd in cmd.outputs and cmd.credit > 0:  # the other stream may have used it up
                        cmd.read(fd, min(_READ, cmd.credit))
            self.settle()
            self.flush()
            self.refill()
        for cmd in self.commands.values():  # the client went away: nothing may outlive it
            cmd.kill(timed_out=False)
        for reaper in list(self.reapers.values()):
            reaper.close()

    def settle(self) -> None:
        """Enforce deadlines, reap exits and report finished commands."""
        self.collect()
        if self.orphans_due:
            self.kill_strays()
        now = time.monotonic()
        for cid, cmd in list(self.commands.items()):
            if cmd.deadline is not None and now >= cmd.deadline and cmd.returncode is None:
                cmd.kill(timed_out=True)
            cmd.poll()
            if cmd.finished(now):
                cmd.finish()
                del self.commands[cid]


def main() -> None:
    """Run the agent; the loader passes its settings as JSON in ``CONFIG_JSON``."""
    Agent(json.loads(globals().get("CONFIG_JSON") or "{}")).run()


if __name__ == "__main__":
    main()
