"""Run the emulator as a child process (for test fixtures and scripts) and read what it prints."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType

#: The variables the emulator prints first, in order.
EXPORTED = ("MODAL_SERVER_URL", "MODAL_TOKEN_ID", "MODAL_TOKEN_SECRET")


class EmulatorProcess:
    """``python -m sandboxkit_modal.emulator`` as a child; ``env`` holds the three printed variables.

    ``env`` given to the constructor is added to the child's environment (e.g. ``XDG_CONFIG_HOME``
    to pick the secret store it reads).

    Use it as a context manager, or call ``stop()``: that interrupts the emulator, which then
    removes the sandboxes it made, and returns its exit code.
    """

    def __init__(
        self,
        *args: str,
        log: Path | None = None,
        command: tuple[str, ...] | None = None,
        env: Mapping[str, str] | None = None,
    ) -> None:
        argv = [*(command or (sys.executable, "-m", "sandboxkit_modal.emulator")), "--port", "0", *args]
        self.log = log
        stderr = log.open("wb") if log is not None else subprocess.DEVNULL
        environ = None if env is None else {**os.environ, **env}
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=stderr, text=True, env=environ)
        assert self.proc.stdout is not None
        lines = [self.proc.stdout.readline().strip() for _ in EXPORTED]
        self.env = dict(line.split("=", 1) for line in lines if "=" in line)
        if tuple(self.env) != EXPORTED:
            self.proc.kill()
            self.proc.wait()
            detail = log.read_text(errors="replace")[-4000:] if log is not None else "(no log kept)"
            raise RuntimeError(f"the Modal emulator did not start (it printed {lines!r}); its log:\n{detail}")

    def stop(self, timeout: float = 60) -> int:
        """Interrupt the emulator and wait for it to clean up; returns its exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()

    def __enter__(self) -> EmulatorProcess:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
