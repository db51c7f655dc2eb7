"""The in-sandbox side of spawned processes: a supervisor per process, its state in files.

Installed once per sandbox (``BASE/.code/sbk_procd_HASH.py``, so it is compiled once) and run as
``python3 -I -S -c LOADER HASH OP BASE ARGS...`` through a provider's ordinary exec (standard
library only, Python 3.9 or newer; see :mod:`sandboxkit._processes`). ``start`` launches a
supervisor that outlives the exec and the client: it detaches (new session, double fork),
re-executes itself (importing this file) with the exec's tree-kill marker removed from its
environment (a detached start, which has no marker, supervises in the forked process itself),
becomes a child subreaper (so every descendant, ``setsid`` and double-forked ones
included, stays in its tree), starts the command (on pipes or a pseudo-terminal) and records,
under ``BASE/ID/``:

* ``meta.json`` - id, command, pty, started_at, the supervisor's pid and start time;
* ``log.NNNNNN`` - output frames (``>BI`` stream, length; 1 stdout, 2 stderr), in arrival order,
  in segments of :data:`SEGMENT` bytes; old segments go once newer ones hold :data:`RETAIN`
  bytes of each stream they carry, so at least the last 1 MiB of each stream is kept;
* ``exit`` - the exit code (``128 + signal`` when a signal ended it), once the command exits;
* ``done`` - once no more output will come (the command and whoever held its output are done,
  or :data:`EXIT_GRACE` passed after it exited);
* ``stdin`` and ``ctl`` - FIFOs: bytes for the command's stdin; control lines (``close``,
  ``resize ROWS COLS``).

Every other op is a short command: ``await`` (the outcome of a ``start`` run detached, as
``docker exec -d``), ``info``, ``read`` (replay the frames, then follow), ``write`` (copy stdin
into the FIFO), ``ctl`` and ``signal`` (to the whole tree). Exit codes: 0 ok; 3 the process has
ended (stdin refused); 4 no such process; 5 bad request; 6 a detached start did not report; 126
the command could not start.
"""

from __future__ import annotations

import errno
import json
import os
import select
import signal
import struct
import sys
import time
from typing import IO, Any

FRAME = struct.Struct(">BI")
STDOUT, STDERR, TRAILER = 1, 2, 3
SEGMENT = 256 << 10
RETAIN = 1 << 20
EXIT_GRACE = 2.0
POLL = 0.05
#: A follower's first pause: it doubles up to :data:`POLL` while nothing new comes.
FIRST_POLL = 0.002
MARKERS = ("SANDBOXKIT_EXEC_ID",)
#: In the command's environment (inherited by its descendants): finds a process of the tree that
#: left it (double fork with ``setsid``) where the supervisor cannot be a subreaper (older gVisor).
TREE = "SANDBOXKIT_PROCESS_ID"
NO_PROCESS, ENDED, BAD = 4, 3, 5
#: How the supervisor starts: its source and arguments arrive on stdin, NUL-separated.
LOADER = (
    "import os,sys;d=sys.stdin.buffer.read().split(b'\\0');n=os.open(os.devnull,os.O_RDONLY);os.dup2(n,0);"
    "sys.argv=['-c','supervise']+[x.decode() for x in d[1:]];p=d[0].decode();sys.path.insert(0,os.path.dirname(p));"
    "__import__(os.path.basename(p)[:-3]).main()"
)


def fail(code: int, message: str) -> None:
    sys.stderr.write(message + "\n")
    sys.exit(code)


def module_file() -> str:
    """This program's installed file (the supervisor imports it too: compiled once per sandbox)."""
    path = globals().get("__file__")
    if not path or not path.endswith(".py"):
        fail(BAD, "the supervisor runs from its installed file, imported")
    return str(path)


def start_time(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return ""


def write_atomic(path: str, text: str) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.rename(tmp, path)


def proc_dir(base: str, pid: str) -> str:
    if not pid or "/" in pid or pid.startswith("."):
        fail(BAD, f"bad process id {pid!r}")
    path = os.path.join(base, pid)
    if not os.path.isfile(os.path.join(path, "meta.json")):
        fail(NO_PROCESS, f"no process {pid} in this sandbox")
    return path


# ---------------------------------------------------------------- start
def op_start(base: str, spec_json: str, detached: str = "0") -> None:
    """Launch the supervisor and report whether the command started (detached: in a file ``await`` reads).

    Attached, the supervisor re-executes itself without the exec's tree-kill marker and reports
    through a pipe. Detached (``docker exec -d``: no marker, nobody reading), it supervises in this
    process after the double fork: one Python start less.
    """
    spec = json.loads(spec_json)
    if detached == "1":
        os.makedirs(base, exist_ok=True)
    read_end, write_end = os.pipe()
    child = os.fork()
    if child == 0:
        os.close(read_end)
        os.setsid()
        if os.fork():
            os._exit(0)
        devnull = os.open(os.devnull, os.O_RDWR)
        if detached == "1":
            os.close(write_end)
            for fd in (0, 1, 2):
                os.dup2(devnull, fd)
            supervise(base, spec, lambda message: write_atomic(os.path.join(base, ".failed-" + spec["id"]), message))
            os._exit(0)
        env = {k: v for k, v in os.environ.items() if k not in MARKERS}
        os.set_inheritable(write_end, True)
        code_read, code_write = os.pipe()  # the program and its request go through a pipe, not the command line
        payload = "\0".join((module_file(), base, spec_json, str(write_end))).encode()
        if len(payload) > 60000:
            import fcntl

            fcntl.fcntl(code_write, 1031, len(payload) + 4096)  # F_SETPIPE_SZ: it all fits before anyone reads
        os.write(code_write, payload)
        os.close(code_write)
        os.dup2(code_read, 0)
        os.close(code_read)
        for fd in (1, 2):  # hold none of the exec's pipes: it ends when the launcher does
            os.dup2(devnull, fd)
        os.execve(sys.executable, [sys.executable, "-I", "-S", "-c", LOADER, "sbk-procd", spec["id"]], env)
    os.close(write_end)
    os.waitpid(child, 0)
    if detached == "1":
        os.close(read_end)
        return  # ``await`` reports the start
    answer = b""
    while True:
        chunk = os.read(read_end, 4096)
        if not chunk:
            break
        answer += chunk
    if answer != b"ok":
        fail(126, answer.decode(errors="replace") or "the supervisor of {} died at start".format(spec["id"]))
    sys.stdout.write(json.dumps([info(base, spec["id"])]))


class Supervisor:
    """Runs one command and keeps its output, stdin and exit status in files."""

    def __init__(self, base: str, spec: dict[str, Any]) -> None:
        self.spec = spec
        self.dir = os.path.join(base, spec["id"])
        self.outputs: dict[int, int] = {}
        self.stdin_fd: int | None = None
        self.pending = b""
        self.close_after = False
        self.segments: list[list[int]] = []  # [number, stdout bytes, stderr bytes]
        self.log: IO[bytes] | None = None
        self.master: int | None = None
        self.exited_at: float | None = None

    def setup(self) -> None:
        try:
            import ctypes

            ctypes.CDLL(None).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER
        except (OSError, AttributeError):
            pass
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        signal.signal(signal.SIGPIPE, signal.SIG_IGN)
        os.makedirs(os.path.dirname(self.dir), exist_ok=True)
        try:
            os.chmod(os.path.dirname(self.dir), 0o1777)
        except OSError:
            pass
        os.mkdir(self.dir, 0o755)
        for name in ("stdin", "ctl"):  # other users of the sandbox may feed it too (not read it)
            os.mkfifo(os.path.join(self.dir, name))
            os.chmod(os.path.join(self.dir, name), 0o622)
        self.fifo = os.open(os.path.join(self.dir, "stdin"), os.O_RDWR | os.O_NONBLOCK)
        self.ctl = os.open(os.path.join(self.dir, "ctl"), os.O_RDWR | os.O_NONBLOCK)
        self.rotate()

    def launch(self) -> None:
        import subprocess

        argv = self.spec["argv"]
        if self.spec.get("pty"):
            import fcntl
            import pty
            import termios

            master, slave = pty.openpty()
            rows, cols = self.spec.get("rows") or 24, self.spec.get("cols") or 80
            fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
            env = {**os.environ, TREE: self.spec["id"]}
            env.setdefault("TERM", "xterm-256color")

            def controlling() -> None:
                fcntl.ioctl(0, termios.TIOCSCTTY, 0)

            self.proc = subprocess.Popen(
                argv,
                stdin=slave,
                stdout=slave,
                stderr=slave,
                cwd=self.spec.get("cwd"),
                env=env,
                start_new_session=True,
                preexec_fn=controlling,
            )
            os.close(slave)
            self.master = master
            self.outputs = {master: STDOUT}
            self.stdin_fd = master
        else:
            self.master = None
            pipe = subprocess.PIPE
            env = {**os.environ, TREE: self.spec["id"]}
            self.proc = subprocess.Popen(argv, stdin=pipe, stdout=pipe, stderr=pipe, cwd=self.spec.get("cwd"), env=env)
            self.outputs = {_own(self.proc.stdout): STDOUT, _own(self.proc.stderr): STDERR}
            self.stdin_fd = _own(self.proc.stdin)
        for fd in self.outputs:
            os.set_blocking(fd, False)
        os.set_blocking(self.stdin_fd, False)
        meta = {
            "id": self.spec["id"],
            "command": argv,
            "pty": bool(self.spec.get("pty")),
            "started_at": time.time(),
            "pid": os.getpid(),
            "start": start_time(os.getpid()),
            "child": self.proc.pid,
        }
        write_atomic(os.path.join(self.dir, "meta.json"), json.dumps(meta))

    # -- output
    def rotate(self) -> None:
        number = self.segments[-1][0] + 1 if self.segments else 1
        if self.log is not None:
            self.log.close()
        self.log = open(os.path.join(self.dir, f"log.{number:06d}"), "ab", buffering=0)  # noqa: SIM115
        self.segments.append([number, 0, 0])
        self.prune()

    def prune(self) -> None:
        for i, (number, out, err) in enumerate(self.segments[:-1]):
            later = self.segments[i + 1 :]
            keep_out = out and sum(s[1] for s in later) < RETAIN
            keep_err = err and sum(s[2] for s in later) < RETAIN
            if not keep_out and not keep_err and number > 0:
                try:
                    os.unlink(os.path.join(self.dir, f"log.{number:06d}"))
                except OSError:
                    pass
                self.segments[i][0] = -number
        self.segments = [s for s in self.segments if s[0] > 0]

    def record(self, stream: int, data: bytes) -> None:
        assert self.log is not None
        self.log.write(FRAME.pack(stream, len(data)) + data)
        self.segments[-1][stream] += len(data)
        if self.log.tell() >= SEGMENT:
            self.rotate()

    def read_output(self, fd: int) -> None:
        try:
            data = os.read(fd, 65536)
        except OSError as exc:
            if exc.errno == errno.EAGAIN:
                return
            data = b""  # EIO: the pty's other side is closed
        if data:
            self.record(self.outputs[fd], data)
        else:
            self.outputs.pop(fd)
            if fd != self.master:
                os.close(fd)

    # -- input
    def take_stdin(self) -> None:
        while True:
            try:
                data = os.read(self.fifo, 65536)
            except OSError:
                return
            if not data:
                return
            if self.stdin_fd is not None:
                self.pending += data

    def push_stdin(self) -> None:
        if self.stdin_fd is None:
            self.pending = b""
            return
        while self.pending:
            try:
                n = os.write(self.stdin_fd, self.pending[:65536])
            except BlockingIOError:
                return
            except OSError:
                self.pending = b""
                break
            self.pending = self.pending[n:]
        if self.close_after and not self.pending:
            self.close_after = False
            if self.master is not None:
                os.write(self.master, b"\x04")  # end of input on a terminal: ^D
            else:
                os.close(self.stdin_fd)
                self.stdin_fd = None

    def control(self) -> None:
        try:
            data = os.read(self.ctl, 4096)
        except OSError:
            return
        for line in data.decode(errors="replace").splitlines():
            word = line.split()
            if word == ["close"]:
                self.take_stdin()
                self.close_after = True
            elif len(word) == 3 and word[0] == "resize" and self.master is not None:
                import fcntl
                import termios

                fcntl.ioctl(self.master, termios.TIOCSWINSZ, struct.pack("HHHH", int(word[1]), int(word[2]), 0, 0))
                try:
                    os.killpg(os.getpgid(self.proc.pid), signal.SIGWINCH)
                except OSError:
                    pass

    # -- life
    def reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            if pid == self.proc.pid and self.exited_at is None:
                code = os.waitstatus_to_exitcode(status)
                self.proc.returncode = code
                write_atomic(os.path.join(self.dir, "exit"), str(128 - code if code < 0 else code))
                self.exited_at = time.monotonic()

    def run(self) -> None:
        done = False
        while True:
            self.reap()
            grace_over = self.exited_at is not None and time.monotonic() - self.exited_at > EXIT_GRACE
            if not done and self.exited_at is not None and (not self.outputs or grace_over):
                if self.log is not None:
                    self.log.close()
                write_atomic(os.path.join(self.dir, "done"), "")
                done = True
            if done:
                try:
                    os.waitpid(-1, 0)  # stay the tree's subreaper while anything of it lives
                    continue
                except ChildProcessError:
                    return
            wanted = [*self.outputs] if not done else []
            readable, _writable, _ = select.select(
                [*wanted, self.fifo, self.ctl], [self.stdin_fd] if self.pending and self.stdin_fd else [], [], POLL
            )
            for fd in readable:
                if fd in self.outputs:
                    self.read_output(fd)
                elif fd == self.fifo:
                    self.take_stdin()
                elif fd == self.ctl:
                    self.control()
            if self.pending or self.close_after:
                self.push_stdin()


def _own(stream: IO[bytes] | None) -> int:
    """A file descriptor of our own for a Popen pipe (the file object is closed)."""
    assert stream is not None
    fd = os.dup(stream.fileno())
    stream.close()
    return fd


def op_supervise(base: str, spec_json: str, report_fd: str) -> None:
    report = int(report_fd)

    def failed(message: str) -> None:
        os.write(report, message.encode())

    supervise(base, json.loads(spec_json), failed, report)


def supervise(base: str, spec: dict[str, Any], failed: Any, report: int | None = None) -> None:
    """Start the command and supervise it until its tree is gone; ``failed(message)`` if it cannot start."""
    supervisor = Supervisor(base, spec)
    try:
        supervisor.setup()
        supervisor.launch()
    except BaseException as exc:  # tell the launcher why, in docker exec's words where it has some
        argv0, cwd = (spec.get("argv") or ["?"])[0], spec.get("cwd")
        if isinstance(exc, OSError) and cwd is not None and exc.filename == cwd:
            message = f'exec failed: chdir to cwd ("{cwd}") failed: {(exc.strerror or "error").lower()}'
        elif isinstance(exc, FileNotFoundError) and exc.filename == argv0:
            message = f'exec failed: exec: "{argv0}": executable file not found in $PATH'
        else:
            message = f"cannot start: {type(exc).__name__}: {exc}"
        failed(message)
        import shutil

        shutil.rmtree(supervisor.dir, ignore_errors=True)
        os._exit(126)
    if report is not None:
        os.write(report, b"ok")
        os.close(report)
    supervisor.run()


# ---------------------------------------------------------------- queries
def info(base: str, pid: str) -> dict[str, Any]:
    path = os.path.join(base, pid)
    with open(os.path.join(path, "meta.json")) as f:
        meta = json.load(f)
    code = None
    try:
        with open(os.path.join(path, "exit")) as f:
            code = int(f.read().strip())
    except (OSError, ValueError):
        pass
    alive = start_time(meta["pid"]) == meta["start"] and bool(meta["start"])
    return {
        "id": meta["id"],
        "command": meta["command"],
        "pty": meta["pty"],
        "started_at": meta["started_at"],
        "running": code is None and alive,
        "exit_code": code,
        "done": os.path.exists(os.path.join(path, "done")) or not alive,
    }


def op_await(base: str, pid: str, seconds: str) -> None:
    """Wait for a detached ``start``: the process's info, or why it could not start."""
    failed = os.path.join(base, ".failed-" + pid)
    deadline = time.monotonic() + float(seconds)
    while time.monotonic() < deadline:
        if os.path.isfile(os.path.join(base, pid, "meta.json")):
            sys.stdout.write(json.dumps([info(base, pid)]))
            return
        if os.path.isfile(failed):
            with open(failed) as f:
                message = f.read()
            os.unlink(failed)
            fail(126, message)
        time.sleep(0.005)
    fail(6, f"process {pid} did not start within {seconds} s")


def op_info(base: str, pid: str = "") -> None:
    if pid:
        proc_dir(base, pid)
        rows = [info(base, pid)]
    else:
        rows = []
        for name in sorted(os.listdir(base)) if os.path.isdir(base) else []:
            try:
                rows.append(info(base, name))
            except (OSError, ValueError, KeyError):
                continue
        rows.sort(key=lambda r: r["started_at"])
    sys.stdout.write(json.dumps(rows))


class Reader:
    """Follows a process's log segments in order, from the oldest kept one."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.number = 0
        self.offset = 0
        self.current: IO[bytes] | None = None

    def segments(self) -> list[int]:
        return sorted(int(n[4:]) for n in os.listdir(self.path) if n.startswith("log.") and n[4:].isdigit())

    def drain(self, out: IO[bytes]) -> bool:
        """Write every complete frame available now; True when there was any."""
        progressed = False
        while True:
            if self.current is None:
                later = [n for n in self.segments() if n > self.number]
                if not later:
                    return progressed
                self.number, self.offset = later[0], 0
                try:
                    self.current = open(os.path.join(self.path, f"log.{self.number:06d}"), "rb")  # noqa: SIM115
                except FileNotFoundError:  # pruned meanwhile: on to the next one
                    continue
            assert self.current is not None
            complete = any(n > self.number for n in self.segments())  # the supervisor writes no more here
            self.current.seek(self.offset)
            while True:
                head = self.current.read(FRAME.size)
                if len(head) < FRAME.size:
                    break
                body = self.current.read(FRAME.unpack(head)[1])
                if len(body) < FRAME.unpack(head)[1]:
                    break
                out.write(head + body)
                self.offset = self.current.tell()
                progressed = True
            out.flush()
            if not complete:
                return progressed
            self.current.close()
            self.current = None


def op_read(base: str, pid: str, follow: str) -> None:
    """Every kept frame, in order, on stdout; with follow, new ones until the output is done; then a trailer."""
    reader = Reader(proc_dir(base, pid))
    out = sys.stdout.buffer
    pause = FIRST_POLL
    while True:
        state = info(base, pid)  # looked at first: once done, everything is in the files
        if reader.drain(out):
            pause = FIRST_POLL
            continue
        if follow != "1" or state["done"]:
            break
        time.sleep(pause)  # new output shows soon after it is written; an idle process costs little
        pause = min(pause * 2, POLL)
    final = json.dumps(info(base, pid)).encode()
    out.write(FRAME.pack(TRAILER, len(final)) + final)
    out.flush()


# ---------------------------------------------------------------- actions
def op_write(base: str, pid: str) -> None:
    path = proc_dir(base, pid)
    if not info(base, pid)["running"]:
        fail(ENDED, f"process {pid} has exited; its stdin is closed")
    try:
        fd = os.open(os.path.join(path, "stdin"), os.O_WRONLY | os.O_NONBLOCK)
    except OSError:
        fail(ENDED, f"process {pid} has exited; its stdin is closed")
    os.set_blocking(fd, True)
    while True:
        data = os.read(0, 65536)
        if not data:
            break
        os.write(fd, data)
    os.close(fd)


def op_ctl(base: str, pid: str, *words: str) -> None:
    path = proc_dir(base, pid)
    if not info(base, pid)["running"]:
        fail(ENDED, f"process {pid} has exited")
    fd = os.open(os.path.join(path, "ctl"), os.O_WRONLY | os.O_NONBLOCK)
    os.write(fd, (" ".join(words) + "\n").encode())
    os.close(fd)


def descendants(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] != "Z":
            children.setdefault(int(fields[1]), []).append(int(entry))
    found, todo = [], [root]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def marked(process_id: str) -> list[int]:
    """Every process whose environment carries this process's :data:`TREE` marker."""
    needle = f"\0{TREE}={process_id}\0".encode()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as f:
                if needle in b"\0" + f.read() + b"\0":
                    found.append(int(entry))
        except OSError:
            continue
    return found


def tree(supervisor: int, process_id: str) -> list[int]:
    """The processes of a spawned command: the supervisor's descendants and whoever carries its marker."""
    return sorted((set(descendants(supervisor)) | set(marked(process_id))) - {supervisor})


def op_signal(base: str, pid: str, name: str) -> None:
    """Send SIG``name`` to every process of the tree; KILL repeats (stopping them first) until none is left."""
    path = proc_dir(base, pid)
    with open(os.path.join(path, "meta.json")) as f:
        meta = json.load(f)
    try:
        sig = getattr(signal, "SIG" + name.upper())
    except AttributeError:
        fail(BAD, f"unknown signal {name!r}")
    if start_time(meta["pid"]) != meta["start"]:
        return  # the supervisor is gone, and so is its tree
    if sig != signal.SIGKILL:
        for target in tree(meta["pid"], pid):
            try:
                os.kill(target, sig)
            except OSError:
                pass
        return
    for _ in range(50):
        targets = tree(meta["pid"], pid)
        if not targets:
            return
        for each in (signal.SIGSTOP, signal.SIGKILL):
            for target in targets:
                try:
                    os.kill(target, each)
                except OSError:
                    pass
        time.sleep(0.01)


def main() -> None:
    ops: dict[str, Any] = {
        "start": op_start,
        "await": op_await,
        "supervise": op_supervise,
        "info": op_info,
        "read": op_read,
        "write": op_write,
        "ctl": op_ctl,
        "signal": op_signal,
    }
    if len(sys.argv) < 3 or sys.argv[1] not in ops:
        fail(BAD, "usage: OP BASE ARGS...")
    base = sys.argv[2]
    if base == "auto":
        base = default_base()
    ops[sys.argv[1]](base, *sys.argv[3:])


def default_base() -> str:
    """Where process state lives: memory, not the filesystem (a snapshot must not catch live processes)."""
    shm = "/dev/shm"
    return os.path.join(shm if os.path.isdir(shm) and os.access(shm, os.W_OK) else "/tmp", ".sandboxkit-procs")


if __name__ == "__main__":
    main()
