"""Process trees inside the sandbox: a per-command child subreaper and a kill that nothing escapes.

Runs in the sandbox as part of the exec agent's source (standard library only, Python 3.9+); the
client imports it only for its source. One job: own every process a command starts.

:func:`prepare` forks a *reaper* that marks itself a child subreaper (``PR_SET_CHILD_SUBREAPER``)
and waits; :meth:`Reaper.start` hands it a command, which it starts as its child (forking ahead
keeps the fork of the agent, its slowest step, off the command's path). Whatever the command does
— ``setsid``, double forks, ``env -i`` — its processes stay below the reaper: an orphan re-parents
to its nearest subreaper ancestor, and the reaper is that ancestor. The reaper waits for every
process below it, reports the command's exit status on a pipe, and lives on (quietly reaping)
while background processes of the command remain, so they stay attributable. :func:`kill_tree`
stops and then kills a whole subtree in passes until a scan finds none left, so a fork bomb cannot
outrun it.

The caller (the agent) must be a subreaper too (:func:`become_subreaper`): if hostile code kills a
reaper, its orphans re-parent to the caller, which kills every child it did not start
(:func:`strays`).

Interface for reuse (background processes, PTYs): ``reaper = prepare()`` forks a reaper with
fresh pipes; ``reaper.start(argv, env=..., cwd=..., user=(uid, gid, groups) or None, stdin=bool)``
runs the command with those pipes as its 0/1/2 (stdin /dev/null unless asked for); the caller
reads ``reaper.stdout``/``reaper.stderr``, writes ``reaper.stdin``, and polls ``reaper.status_fd``,
which becomes readable once: ``reaper.read_status()`` -> ``("exit", code)``, ``("error",
message)`` (the command could not start) or ``("lost", 137)`` (the reaper was killed).
``kill_tree({reaper.pid}, reap=...)`` ends the reaper and everything below it; ``reaper.discard()``
drops one never started. The caller must be a subreaper and kill its :func:`strays`.
"""

from __future__ import annotations

import ctypes
import json
import os
import signal
import time
from typing import Any

PR_SET_PDEATHSIG = 1
PR_SET_DUMPABLE = 4
PR_SET_CHILD_SUBREAPER = 36
#: A reaper's process name once its command's main process has exited (the idle watchdog skips it).
IDLE_COMM = "sbk-reaper"
#: Longest one :func:`kill_tree` may take before it gives up on what is left.
KILL_SECONDS = 20.0
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


def process_table() -> dict[int, tuple[int, str]]:
    """pid -> (parent pid, state) of every process this process can see."""
    table: dict[int, tuple[int, str]] = {}
    for entry in os.listdir("/proc"):
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


def kill_tree(roots: set[int], reap: Any = None) -> bool:
    """SIGSTOP every process at and under ``roots`` until none runs, then SIGKILL them; repeat until none is left.

    Stopped processes cannot fork, so each pass only has to catch what was forked before its
    SIGSTOP landed. ``reap`` (called between passes) collects the caller's own dead children.
    Returns False if processes were still left after :data:`KILL_SECONDS`.
    """
    me = os.getpid()
    deadline = time.monotonic() + KILL_SECONDS
    while time.monotonic() < deadline:
        table = process_table()
        tree = below(table, roots) - {me}
        if not tree:
            return True
        running = tree
        while running and time.monotonic() < deadline:  # freeze: stop until every member is stopped
            for pid in running:
                _signal(pid, signal.SIGSTOP)
            table = process_table()
            tree = below(table, roots) - {me}
            running = {pid for pid in tree if table[pid][1] not in "Tt"}
        for pid in tree:
            _signal(pid, signal.SIGKILL)
        if reap is not None:
            reap()
        else:
            time.sleep(0.001)
    return False


def strays(known: set[int]) -> set[int]:
    """Children of this process that are not in ``known`` (orphans of a reaper that was killed)."""
    me = os.getpid()
    try:
        with open(f"/proc/{me}/task/{me}/children") as f:
            children = {int(pid) for pid in f.read().split()}
    except OSError:  # a kernel without CONFIG_PROC_CHILDREN
        children = {pid for pid, (ppid, _) in process_table().items() if ppid == me}
    return children - known


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except OSError:
        pass


class Reaper:
    """A reaper forked ahead of its command: its pid and the caller's ends of the command's pipes.

    ``stdout``/``stderr`` (and ``stdin``, unless the command was started without one) are the
    caller's ends; ``status_fd`` reports the command's end (:meth:`read_status`).
    """

    def __init__(self, pid: int, ctl_fd: int, status_fd: int, stdout: int, stderr: int, stdin: int) -> None:
        self.pid, self.ctl_fd, self.status_fd = pid, ctl_fd, status_fd
        self.stdout, self.stderr, self.stdin = stdout, stderr, stdin

    def start(
        self,
        argv: list[str],
        *,
        env: dict[str, str],
        cwd: str | None,
        user: tuple[int, int, list[int]] | None,
        stdin: bool,
    ) -> None:
        """Run ``argv`` in a new session with ``cwd``, ``user`` (uid, gid, groups) and exactly ``env``."""
        spec = {"argv": argv, "env": env, "cwd": cwd, "user": user, "stdin": stdin}
        try:
            data = memoryview(json.dumps(spec).encode())
            while data:
                data = data[os.write(self.ctl_fd, data) :]
        finally:
            os.close(self.ctl_fd)
            self.ctl_fd = -1
        if not stdin:
            os.close(self.stdin)
            self.stdin = -1

    def discard(self) -> None:
        """Close every end of a reaper never started (it sees EOF and exits)."""
        for fd in (self.ctl_fd, self.status_fd, self.stdout, self.stderr, self.stdin):
            if fd >= 0:
                os.close(fd)

    def read_status(self) -> tuple[str, Any]:
        """The report, once ``status_fd`` is readable: ("exit", code), ("error", message) or ("lost", 137)."""
        try:
            data = os.read(self.status_fd, 65536)
        except OSError:
            data = b""
        os.close(self.status_fd)
        self.status_fd = -1
        if data[:1] == b"X":
            return "exit", int(data[1:])
        if data[:1] == b"E":
            return "error", data[1:].decode(errors="replace")
        return "lost", 137


def prepare() -> Reaper:
    """Fork a reaper and the pipes of the command it will run; it waits for :meth:`Reaper.start`."""
    fds: list[int] = []
    try:
        for _ in range(5):
            fds += os.pipe()
        ctl_r, ctl_w, status_r, status_w, out_r, out_w, err_r, err_w, in_r, in_w = fds
        pid = os.fork()
    except BaseException:
        for fd in fds:
            os.close(fd)
        raise
    if pid == 0:
        try:  # the reaper: nothing below may raise out of here
            _reaper(ctl_r, status_w, (in_r, out_w, err_w))
        finally:
            os._exit(0)
    for fd in (ctl_r, status_w, out_w, err_w, in_r):
        os.close(fd)
    return Reaper(pid, ctl_w, status_r, out_r, err_r, in_w)


def _reaper(ctl_r: int, status_w: int, stdio: tuple[int, int, int]) -> None:
    parent = os.getppid()
    signal.set_wakeup_fd(-1)
    for sig in (signal.SIGCHLD, signal.SIGINT, signal.SIGTERM, signal.SIGPIPE, signal.SIGXFSZ):
        signal.signal(sig, signal.SIG_DFL)
    _keep_only({*stdio, ctl_r, status_w})
    become_subreaper()
    running = [True]

    def parent_died(*_: Any) -> None:  # the agent is gone: a command still running must not outlive it
        if running[0]:
            kill_tree(_children())
            os._exit(0)

    signal.signal(signal.SIGUSR1, parent_died)
    prctl(PR_SET_PDEATHSIG, signal.SIGUSR1)
    if os.getppid() != parent:
        return
    raw = b""
    while True:
        chunk = os.read(ctl_r, 1 << 16)
        if not chunk:
            break
        raw += chunk
    os.close(ctl_r)
    if not raw:  # discarded, or the agent went away
        return
    spec = json.loads(raw)
    argv, env, cwd, user = spec["argv"], spec["env"], spec["cwd"], spec["user"]
    if not spec["stdin"]:
        os.close(stdio[0])
        stdio = (0, stdio[1], stdio[2])  # fd 0 is /dev/null here
    try:
        child = _start(argv, env, cwd, user, stdio)
    except Exception as exc:
        _report(status_w, b"E" + start_error(argv[0], cwd, exc).encode())
        return
    env.clear()  # this copy of the command's environment (secrets) is not needed any more
    for fd in set(stdio) - {0}:  # the command holds its pipes now; its ends close when its processes do
        os.close(fd)
    while True:
        try:
            pid, status = os.waitpid(-1, 0)
        except ChildProcessError:
            return
        if pid == child:
            running[0] = False
            _report(status_w, b"X%d" % os.waitstatus_to_exitcode(status))
            _rename(IDLE_COMM)  # what is left below is background work, not a running command


def _start(argv: list[str], env: dict[str, str], cwd: str | None, user: Any, stdio: tuple[int, int, int]) -> int:
    """Start the command as ``subprocess.Popen(start_new_session=True, ...)`` would, only lighter.

    Without ``user``: ``posix_spawn`` (vfork-fast) after a ``chdir`` here; with it, fork and exec.
    """
    if user is None and hasattr(os, "posix_spawn"):
        if cwd is not None:
            os.chdir(cwd)
        actions = [(os.POSIX_SPAWN_DUP2, fd, target) for target, fd in enumerate(stdio)]
        first: OSError | None = None
        try:
            for path in _candidates(argv[0], env):
                try:
                    return os.posix_spawn(path, argv, env, file_actions=actions, setsid=True)
                except OSError as exc:
                    if exc.errno not in (2, 20):  # ENOENT, ENOTDIR: try the next directory of PATH
                        first = first or exc
            failed = first or FileNotFoundError(2, os.strerror(2))
            raise OSError(failed.errno, failed.strerror, argv[0])
        except NotImplementedError:  # a libc without POSIX_SPAWN_SETSID: fork and exec below
            cwd = None
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


def _report(fd: int, message: bytes) -> None:
    try:
        os.write(fd, message)
        os.close(fd)
    except OSError:
        pass


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
