"""Process trees inside the sandbox: a per-command child subreaper and a kill that nothing escapes.

Runs in the sandbox as part of the exec agent's source (standard library only, Python 3.9+); the
client imports it only for its source. One job: own every process a command starts.

:func:`prepare` forks a *reaper* that marks itself a child subreaper (``PR_SET_CHILD_SUBREAPER``)
and waits; :meth:`Reaper.start` hands it a command, which it starts as its child. Whatever the
command does — ``setsid``, double forks, ``env -i`` — its processes stay below the reaper: an
orphan re-parents to its nearest subreaper ancestor, and the reaper is that ancestor. The reaper
waits for every process below it and reports the command's exit status; while background processes
of the command remain it lives on, reaping them, so they stay attributable; once nothing is left
below it, it says so and takes the next command (reuse keeps the fork of the agent off the
command's path). :func:`kill_tree` stops and then kills a whole subtree in passes until a scan
finds none left; when the tree outruns the passes (a fork bomb) it stops the whole sandbox for the
moment it takes to finish the tree, so nothing can outrun it.

The caller (the agent) must be a subreaper too (:func:`become_subreaper`): if hostile code kills a
reaper, its orphans re-parent to the caller, which kills every child it did not start
(:func:`strays`).

Interface for reuse (background processes, PTYs): ``reaper = prepare()`` forks a reaper (the
caller must be a subreaper and kill its :func:`strays`). ``reaper.start(argv, env=..., cwd=...,
user=(uid, gid, groups) or None, stdio=(stdin or None, stdout, stderr))`` hands it a command with
the command's ends of its pipes (the caller closes its copies). Poll ``reaper.fd``;
``reaper.reports()`` returns what happened: ``("exit", code)``, ``("error", message)`` (could not
start), ``("idle", 0)`` (nothing left below it: it takes the next command), ``("lost", 137)`` (it
was killed). ``kill_tree({reaper.pid}, reap=...)`` ends it and everything below it;
``reaper.close()`` lets an idle one go.
"""

from __future__ import annotations

import ctypes
import json
import os
import signal
import socket
import struct
import time
from typing import Any

PR_SET_PDEATHSIG = 1
PR_SET_DUMPABLE = 4
PR_SET_CHILD_SUBREAPER = 36
#: A reaper's process name while it waits or its command's main process has exited: the idle
#: watchdog skips it and what runs below it (background work is not activity).
IDLE_COMM = "sbk-reaper"
#: ... and while its command runs: a child of the agent, so the watchdog counts it as activity.
BUSY_COMM = "sbk-exec-cmd"
#: Longest the caller waits to hand a reaper its command.
SEND_SECONDS = 5.0
_LENGTH = struct.Struct(">I")
#: The sandbox's task count where cgroup v1 and v2 show it inside a container.
_PIDS_CURRENT = ("/sys/fs/cgroup/pids/pids.current", "/sys/fs/cgroup/pids.current")
_home = [-1]  # the reaper's starting directory, as an fd
#: Longest one :func:`kill_tree` may take before it gives up on what is left.
KILL_SECONDS = 20.0
#: How long :func:`kill_tree` races a tree's forks before it stops the whole sandbox to finish it.
RACE_SECONDS = 1.0
#: ... and how many processes the sandbox may hold before it does so at once.
HALT_AT = 512
_libc: Any = None


def prctl(option: int, value: int) -> bool:
    """``prctl(option, value)``; True when the kernel accepted it."""
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
    return bool(_libc.prctl(option, value, 0, 0, 0) == 0)


def become_private() -> bool:
    """Non-dumpable: /proc/<pid>/fd, /mem and /environ close to processes without CAP_SYS_PTRACE."""
    return prctl(PR_SET_DUMPABLE, 0)


def become_subreaper() -> bool:
    """Orphans below this process re-parent to it rather than to the sandbox's PID 1."""
    return prctl(PR_SET_CHILD_SUBREAPER, 1)


def process_table(until: float | None = None) -> dict[int, tuple[int, str]] | None:
    """pid -> (parent pid, state) of every process this process can see; None once past ``until``."""
    table: dict[int, tuple[int, str]] = {}
    for n, entry in enumerate(os.listdir("/proc")):
        if until is not None and n % 64 == 0 and time.monotonic() > until:
            return None
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rfind(b")") + 2 :].split(b" ", 2)  # the name may hold spaces and parens
        if len(fields) >= 2:
            table[int(entry)] = (int(fields[1]), fields[0].decode())
    return table


def process_count() -> int:
    """How many tasks the sandbox holds: its pids cgroup's count (one small read), else /proc's entries."""
    for path in _PIDS_CURRENT:
        try:
            with open(path, "rb") as f:
                return int(f.read())
        except (OSError, ValueError):
            continue
    return len(os.listdir("/proc"))


def below(table: dict[int, tuple[int, str]], roots: set[int]) -> set[int]:
    """``roots`` (those still alive) and every live process under them."""
    children: dict[int, list[int]] = {}
    for pid, (ppid, _) in table.items():
        children.setdefault(ppid, []).append(pid)
    found = {pid for pid in roots if pid in table}
    todo = list(roots)
    while todo:
        for child in children.get(todo.pop(), ()):
            if child not in found:
                found.add(child)
                todo.append(child)
    return {pid for pid in found if table.get(pid, (0, "Z"))[1] not in "ZX"}


def kill_tree(roots: set[int], reap: Any = None, keep: set[int] | None = None) -> bool:
    """SIGSTOP, then SIGKILL, every process at and under ``roots``, in passes until a scan finds none.

    Within a pass every member is stopped before any is killed, so none forks while the pass runs;
    the next pass catches what was forked before its SIGSTOP landed. ``keep``: when given, every
    child of the caller not in it counts as part of the tree too (an orphan of a killed member that
    re-parented to the caller, a subreaper). ``reap`` (called between passes) collects the caller's
    own dead children. False if processes were left after :data:`KILL_SECONDS`.

    A tree that forks faster than the passes run (a fork bomb) starves the caller of CPU in the
    sandbox's cgroup: each scan then takes a whole scheduling round per slice. Past
    :data:`RACE_SECONDS`, or with more than :data:`HALT_AT` processes in the sandbox (the first scan
    alone would take too long), the kill stops every other process of the sandbox at once with
    ``kill(-1, SIGSTOP)`` (one system call; PID 1 and the caller excepted), finishes the tree with
    the CPU to itself, and continues the rest with ``kill(-1, SIGCONT)``.
    """
    me = os.getpid()
    now = time.monotonic()
    deadline, race = now + KILL_SECONDS, now + RACE_SECONDS
    halted = False
    try:
        while time.monotonic() < deadline:
            if not halted and (time.monotonic() > race or process_count() > HALT_AT):
                _signal(-1, signal.SIGSTOP)
                halted = True
            table = process_table(None if halted else race)
            if table is None:
                continue
            start = set(roots)
            if keep is not None:
                start |= {pid for pid, (ppid, _) in table.items() if ppid == me and pid not in keep}
            tree = below(table, start) - {me}
            if not tree:
                return True
            for sig in (signal.SIGSTOP, signal.SIGKILL):
                for pid in tree:
                    _signal(pid, sig)
            if reap is not None:
                reap()
        return False
    finally:
        if halted:
            _signal(-1, signal.SIGCONT)


def strays(known: set[int]) -> set[int]:
    """Children of this process that are not in ``known`` (orphans of a reaper that was killed)."""
    me = os.getpid()
    try:
        with open(f"/proc/{me}/task/{me}/children") as f:
            children = {int(pid) for pid in f.read().split()}
    except OSError:  # a kernel without CONFIG_PROC_CHILDREN
        children = {pid for pid, (ppid, _) in (process_table() or {}).items() if ppid == me}
    return children - known


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except OSError:
        pass


class Reaper:
    """The caller's end of one reaper: its pid and the socket that carries commands in and reports out.

    A reaper runs one command at a time and is reused: once everything below it has exited it
    says so (``("idle", 0)``) and takes the next command, so a command costs no fork of the caller.
    """

    def __init__(self, pid: int, sock: socket.socket) -> None:
        self.pid, self.sock, self.fd = pid, sock, sock.fileno()
        self.inbox = b""
        #: whatever the caller attaches (the command it runs)
        self.owner: Any = None

    def start(
        self,
        argv: list[str],
        *,
        env: dict[str, str],
        cwd: str | None,
        user: tuple[int, int, list[int]] | None,
        stdio: tuple[int | None, int, int],
    ) -> None:
        """Run ``argv`` in a new session with ``cwd``, ``user`` (uid, gid, groups) and exactly ``env``.

        ``stdio``: the command's ends of its stdin (None: /dev/null), stdout and stderr pipes; the
        caller closes its copies afterwards. Raises OSError when the reaper does not take it.
        """
        spec = json.dumps({"argv": argv, "env": env, "cwd": cwd, "user": user, "stdin": stdio[0] is not None})
        data = spec.encode()
        fds = [fd for fd in stdio if fd is not None]
        self.sock.settimeout(SEND_SECONDS)  # a reaper stopped from inside must not stop the caller
        try:
            head = _LENGTH.pack(len(data)) + data[: 1 << 16]
            sent = socket.send_fds(self.sock, [head], fds)
            self.sock.sendall(head[sent:] + data[1 << 16 :])
        finally:
            self.sock.setblocking(False)

    def reports(self) -> list[tuple[str, Any]]:
        """What the reaper said since last asked: ("exit", code), ("error", message), ("idle", 0), ("lost", 137)."""
        found: list[tuple[str, Any]] = []
        while True:
            try:
                chunk = self.sock.recv(65536)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                chunk = b""
            if not chunk:
                found.append(("lost", 137))
                break
            self.inbox += chunk
        *lines, self.inbox = self.inbox.split(b"\n")
        parsed = [_parse(line) for line in lines]
        return parsed + found

    def close(self) -> None:
        """Let the reaper go: it sees EOF and exits (killing nothing: call kill_tree first for that)."""
        self.sock.close()


def _parse(line: bytes) -> tuple[str, Any]:
    kind, body = line[:1], line[1:]
    if kind == b"X":
        return "exit", int(body)
    if kind == b"E":
        return "error", json.loads(body)
    return "idle", 0


def prepare() -> Reaper:
    """Fork a reaper; it waits for :meth:`Reaper.start`."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        pid = os.fork()
    except BaseException:
        ours.close()
        theirs.close()
        raise
    if pid == 0:
        try:  # the reaper: nothing below may raise out of here
            ours.detach()
            _reaper(theirs)
        finally:
            os._exit(0)
    theirs.close()
    ours.setblocking(False)
    return Reaper(pid, ours)


def _reaper(sock: socket.socket) -> None:
    parent = os.getppid()
    signal.set_wakeup_fd(-1)
    for sig in (signal.SIGCHLD, signal.SIGINT, signal.SIGTERM, signal.SIGPIPE, signal.SIGXFSZ):
        signal.signal(sig, signal.SIG_DFL)
    _rename(IDLE_COMM)
    _keep_only({sock.fileno()})
    _home[0] = os.open(".", os.O_RDONLY | os.O_DIRECTORY)
    become_subreaper()
    running = [False]

    def parent_died(*_: Any) -> None:  # the agent is gone: a command still running must not outlive it
        if running[0]:
            kill_tree(_children(), keep=set())
        os._exit(0)

    signal.signal(signal.SIGUSR1, parent_died)
    prctl(PR_SET_PDEATHSIG, signal.SIGUSR1)
    if os.getppid() != parent:
        return
    sock.setblocking(True)
    while True:
        try:
            head, fds, _, _ = socket.recv_fds(sock, 1 << 16, 3)
        except OSError:
            return
        for fd in fds:  # received fds are inheritable: none may leak into the command
            os.set_inheritable(fd, False)
        if len(head) < _LENGTH.size:
            return  # EOF: let go, or the agent went away
        size = _LENGTH.unpack_from(head)[0]
        data = head[_LENGTH.size :]
        while len(data) < size:
            chunk = sock.recv(min(1 << 20, size - len(data)))
            if not chunk:
                return
            data += chunk
        spec = json.loads(data)
        argv, env, cwd, user = spec["argv"], spec["env"], spec["cwd"], spec["user"]
        stdio = (fds[0], fds[1], fds[2]) if spec["stdin"] else (0, fds[0], fds[1])  # fd 0 is /dev/null here
        _rename(BUSY_COMM)
        try:
            child = _start(argv, env, cwd, user, stdio)
        except Exception as exc:
            child = 0
            _send(sock, b"E" + json.dumps(start_error(argv[0], cwd, exc)).encode())
        finally:
            env.clear()  # this copy of the command's environment (secrets) is not needed any more
            for fd in fds:  # the command holds its pipes now; its ends close when its processes do
                os.close(fd)
        running[0] = child != 0
        while child:
            try:
                pid, status = os.waitpid(-1, 0)
            except ChildProcessError:
                break
            if pid == child:
                running[0] = False
                _send(sock, b"X%d" % os.waitstatus_to_exitcode(status))
                _rename(IDLE_COMM)  # what is left below is background work, not a running command
        _rename(IDLE_COMM)
        _send(sock, b"I")  # nothing below any more: ready for the next command


def _send(sock: socket.socket, message: bytes) -> None:
    try:
        sock.sendall(message + b"\n")
    except OSError:
        pass


def _start(argv: list[str], env: dict[str, str], cwd: str | None, user: Any, stdio: tuple[int, int, int]) -> int:
    """Start the command as ``subprocess.Popen(start_new_session=True, ...)`` would, only lighter.

    Without ``user``: ``posix_spawn`` (vfork-fast) after a ``chdir`` here; with it, fork and exec.
    """
    if user is None and hasattr(os, "posix_spawn"):
        if cwd is not None:
            os.chdir(cwd)
        try:
            return _spawn(argv, env, stdio)
        except NotImplementedError:  # a libc without POSIX_SPAWN_SETSID: fork and exec below
            pass
        finally:
            os.fchdir(_home[0])  # the reaper is reused: the next command starts where this one did not
    return _fork_exec(argv, env, cwd, user, stdio)


def _spawn(argv: list[str], env: dict[str, str], stdio: tuple[int, int, int]) -> int:
    actions = [(os.POSIX_SPAWN_DUP2, fd, target) for target, fd in enumerate(stdio)]
    first: OSError | None = None
    for path in _candidates(argv[0], env):
        try:
            return os.posix_spawn(path, argv, env, file_actions=actions, setsid=True)
        except OSError as exc:
            if exc.errno not in (2, 20):  # ENOENT, ENOTDIR: try the next directory of PATH
                first = first or exc
    failed = first or FileNotFoundError(2, os.strerror(2))
    raise OSError(failed.errno, failed.strerror, argv[0])


def _fork_exec(argv: list[str], env: dict[str, str], cwd: str | None, user: Any, stdio: tuple[int, int, int]) -> int:
    """Fork and exec, switching user in the child (posix_spawn cannot)."""
    err_r, err_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        step = "setsid"
        try:
            os.setsid()
            for target, fd in enumerate(stdio):
                os.dup2(fd, target)
            if cwd is not None:
                step = "cwd"
                os.chdir(cwd)
            if user is not None:
                step = "user"
                os.setgroups(user[2])
                os.setgid(user[1])
                os.setuid(user[0])
            step = "exec"
            os.execvpe(argv[0], argv, env)
        except OSError as exc:
            os.write(err_w, f"{step}:{exc.errno or 0}".encode())
        finally:
            os._exit(127)
    os.close(err_w)
    report = b""
    while True:
        chunk = os.read(err_r, 256)
        if not chunk:
            break
        report += chunk
    os.close(err_r)
    if report:
        os.waitpid(pid, 0)
        step, _, number = report.decode().partition(":")
        errno = int(number or 0)
        raise OSError(errno, os.strerror(errno), cwd if step == "cwd" else argv[0])
    return pid


def _candidates(name: str, env: dict[str, str]) -> list[str]:
    """Where ``execvpe`` would look for ``name``, in order."""
    if "/" in name:
        return [name]
    return [os.path.join(d, name) for d in os.get_exec_path(env)]


def _rename(comm: str) -> None:
    try:
        with open("/proc/self/comm", "w") as f:
            f.write(comm)
    except OSError:
        pass


def _children() -> set[int]:
    return strays(set())


def _keep_only(keep: set[int]) -> None:
    """Close every fd but ``keep`` (all above 2); 0-2 become /dev/null (the agent's stdio is its channel)."""
    for fd, mode in ((0, os.O_RDONLY), (1, os.O_WRONLY), (2, os.O_WRONLY)):  # 0 is what docker exec gives
        null = os.open(os.devnull, mode)  # a command without stdin: /dev/null, read-only
        os.dup2(null, fd)
        os.close(null)
    low = 3
    for fd in sorted(keep):
        os.closerange(low, fd)
        low = fd + 1
    os.closerange(low, max(low + 1, os.sysconf("SC_OPEN_MAX")))


def start_error(argv0: str, cwd: str | None, exc: BaseException) -> str:
    """What ``docker exec`` would say when a command cannot start."""
    if isinstance(exc, LookupError):
        return f"exec failed: {exc}"
    if isinstance(exc, OSError):
        if cwd is not None and exc.filename == cwd:
            return f'exec failed: chdir to cwd ("{cwd}") failed: {(exc.strerror or "error").lower()}'
        if isinstance(exc, FileNotFoundError) and "/" not in argv0:
            return f'exec failed: exec: "{argv0}": executable file not found in $PATH'
        reason = (exc.strerror or str(exc)).lower()
        return f'exec failed: exec: "{argv0}": {reason}'
    return f"exec failed: {type(exc).__name__}: {exc}"
