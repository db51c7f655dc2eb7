"""The supervisor of one sandbox: a small process outside the sandbox's namespaces that holds it.

The client starts it detached (own session) as
``unshare --mount --propagation private -- python3 -I -S _supervisor.py STATE_DIR``, so the
overlay it mounts exists only in its private mount namespace and vanishes with it. It reads
``STATE_DIR/config.json`` (written by the client), mounts the copy-on-write root, starts bwrap
with the sandbox in its cgroups, attaches the user-mode network, writes ``ready.json``, prints one
JSON line on stdout (``{"ok": ...}`` or ``{"error": ...}``) and then enforces the lifetime: it
ends the sandbox at its deadline, after ``idle_timeout`` seconds without a running command, on
SIGTERM (``terminate``) or when bwrap ends. Ending means: SIGKILL to the sandbox's PID 1 (which
takes its whole pid namespace), every process left in the sandbox's cgroups killed, the cgroups
and the writable layer removed, and the state directory (the registry entry) removed last.

Standard library only, no sandboxkit import: it runs with ``-I -S`` for a fast start.
"""

from __future__ import annotations

import json
import os
import select
import shutil
import signal
import subprocess
import sys
import time
from typing import Any

#: Seconds the sandbox's inner shell has to say it is ready.
START_TIMEOUT = 30.0
#: How often the lifetime loop wakes when nothing happens.
TICK = 0.5


def starttime(pid: int) -> str | None:
    """Field 22 of /proc/PID/stat (start time in ticks): tells a pid from a reused one.

    None when the process is gone or a zombie (dead, not yet reaped).
    """
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return None if len(fields) < 20 or fields[0] in ("Z", "X") else fields[19]


def cgroup_pids(directory: str) -> list[int]:
    """Every pid in ``directory`` and the cgroups below it."""
    pids: list[int] = []
    for root, _dirs, files in os.walk(directory):
        if "cgroup.procs" in files:
            try:
                with open(os.path.join(root, "cgroup.procs")) as f:
                    pids += [int(p) for p in f.read().split()]
            except OSError:
                pass
    return pids


def kill_cgroups(directories: list[str]) -> None:
    """SIGKILL every process in these cgroup trees until none is left (bounded)."""
    for _ in range(200):
        pids = [p for d in directories for p in cgroup_pids(d)]
        if not pids:
            return
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.01)


def remove_cgroups(directories: list[str]) -> None:
    """rmdir each cgroup tree, deepest first (the kernel frees them once empty)."""
    for top in directories:
        for root, _dirs, _files in sorted(os.walk(top, topdown=False), key=lambda w: -len(w[0])):
            for _ in range(50):
                try:
                    os.rmdir(root)
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.02)


def busy(command_parent: str) -> bool:
    """True while any command cgroup (``cmd-*``) below ``command_parent`` holds a process."""
    try:
        names = os.listdir(command_parent)
    except OSError:
        return False
    return any(n.startswith("cmd-") and cgroup_pids(os.path.join(command_parent, n)) for n in names)


class Supervisor:
    def __init__(self, state_dir: str) -> None:
        self.dir = state_dir
        with open(os.path.join(state_dir, "config.json")) as f:
            self.cfg: dict[str, Any] = json.load(f)
        self.bwrap: subprocess.Popen[bytes] | None = None
        self.net: subprocess.Popen[bytes] | None = None
        self.init_pid: int | None = None
        self.mounted = False

    def start(self) -> dict[str, Any]:
        cfg = self.cfg
        for path in (cfg["upper"], cfg["work"], cfg["merged"]):
            os.makedirs(path, exist_ok=True)
        opts = f"lowerdir={cfg['rootfs']},upperdir={cfg['upper']},workdir={cfg['work']}"
        mount = subprocess.run(
            ["mount", "-t", "overlay", "overlay", "-o", opts, cfg["merged"]], capture_output=True, text=True
        )
        if mount.returncode != 0:
            raise RuntimeError(f"mounting the copy-on-write root failed: {mount.stderr.strip()}")
        self.mounted = True
        info_r, info_w = os.pipe()
        argv = [*cfg["bwrap"], "--info-fd", str(info_w), "--", "/bin/sh", "-c", "echo ready; read x"]
        procs = cfg["cgroup_procs"]
        self.bwrap = subprocess.Popen(
            ["/bin/sh", "-c", JOIN_CGROUPS, "sh", *procs, "--", *cfg["cgroupns"], *argv],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            pass_fds=(info_w,),
        )
        os.close(info_w)
        assert self.bwrap.stdout is not None and self.bwrap.stderr is not None
        ready, _, _ = select.select([self.bwrap.stdout], [], [], START_TIMEOUT)
        line = os.read(self.bwrap.stdout.fileno(), 64) if ready else b""
        if line.strip() != b"ready":
            self.bwrap.kill()
            err = self.bwrap.stderr.read().decode(errors="replace").strip()
            raise RuntimeError(f"bwrap did not start the sandbox: {err or 'no output'}")
        with os.fdopen(info_r) as f:
            info = json.loads(f.read())
        self.init_pid = int(info["child-pid"])
        if cfg.get("network_cmd"):
            self.start_network([a.replace("{pid}", str(self.init_pid)) for a in cfg["network_cmd"]])
        state = {
            "supervisor_pid": os.getpid(),
            "supervisor_start": starttime(os.getpid()),
            "init_pid": self.init_pid,
            "init_start": starttime(self.init_pid),
        }
        tmp = os.path.join(self.dir, "ready.json.tmp")
        with open(tmp, "w") as f:
            json.dump(state, f)
        os.rename(tmp, os.path.join(self.dir, "ready.json"))
        return state

    def start_network(self, argv: list[str]) -> None:
        ready_r, ready_w = os.pipe()
        self.net = subprocess.Popen(
            [*argv[:1], "--ready-fd", str(ready_w), *argv[1:]],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            pass_fds=(ready_w,),
        )
        os.close(ready_w)
        ready, _, _ = select.select([ready_r], [], [], START_TIMEOUT)
        got = os.read(ready_r, 1) if ready else b""
        os.close(ready_r)
        if got != b"1":
            self.net.kill()
            assert self.net.stderr is not None
            err = self.net.stderr.read().decode(errors="replace").strip()
            raise RuntimeError(f"the user-mode network ({argv[0]}) did not start: {err or 'no output'}")

    def run(self) -> str:
        """Wait for the end of the sandbox's life; return why it ended."""
        cfg = self.cfg
        deadline = time.monotonic() + float(cfg["timeout"])
        idle = cfg.get("idle_timeout")
        last_busy = time.monotonic()
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT, signal.SIGHUP})
        assert self.bwrap is not None
        while True:
            now = time.monotonic()
            if now >= deadline:
                return "expired"
            if self.bwrap.poll() is not None:
                return "stopped"
            if idle is not None:
                if busy(cfg["command_cgroups"]):
                    last_busy = now
                elif now - last_busy >= float(idle):
                    return "idle"
            wait = min(TICK, max(deadline - now, 0.001))
            if signal.sigtimedwait([signal.SIGTERM, signal.SIGINT, signal.SIGHUP], wait) is not None:
                return "terminated"

    def stop(self) -> None:
        if self.init_pid is not None:
            try:
                os.kill(self.init_pid, signal.SIGKILL)  # ends the whole pid namespace
            except ProcessLookupError:
                pass
            if self.bwrap is not None:  # bwrap reaps it and exits (clients wait for that)
                try:
                    self.bwrap.wait(5)
                except subprocess.TimeoutExpired:
                    pass
        kill_cgroups(self.cfg["cgroup_dirs"])
        for proc in (self.bwrap, self.net):
            if proc is not None:
                proc.kill()
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    pass
        remove_cgroups(self.cfg["cgroup_dirs"])
        if self.mounted:
            subprocess.run(["umount", "-l", self.cfg["merged"]], capture_output=True)
        trash = self.dir.rstrip("/") + ".gone"
        try:
            os.rename(self.dir, trash)  # the registry entry disappears at once
        except OSError:
            trash = self.dir
        shutil.rmtree(trash, ignore_errors=True)


#: Joins the cgroups whose ``cgroup.procs`` files precede ``--``, then execs what follows it.
JOIN_CGROUPS = 'while [ "$1" != -- ]; do echo $$ > "$1" || exit 125; shift; done; shift; exec "$@"'


def main() -> int:
    sup = Supervisor(sys.argv[1])
    try:
        state = sup.start()
    except Exception as exc:
        print(json.dumps({"error": str(exc)}), flush=True)
        sup.stop()
        return 1
    print(json.dumps({"ok": state}), flush=True)
    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull, 1)
    reason = sup.run()
    with open(os.path.join(sup.dir, "ended"), "w") as f:
        f.write(reason)
    sup.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
