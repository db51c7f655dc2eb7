"""deepagents backend over any sandboxkit sandbox: ``create_deep_agent(backend=SandboxkitBackend(sb))``.

Commands run through the sandbox's ``execute``. File contents only travel through its
``upload_files``/``download_files`` (tar archives on Docker), never on a command line; edits
upload their old and new strings as files too. Listing, reading pages, grep and glob run
deepagents' own helper scripts, so the image needs ``python3`` (the Docker provider's default
image has it).

deepagents 0.7 and langchain-tests 1.1.9 disagree on two points; the defaults follow deepagents
(what its tools promise the model), and two switches select the test suite's older contract:

- ``overwrite=True``: ``write`` replaces an existing file, as deepagents' ``write_file`` tool says.
  ``overwrite=False`` refuses with "already exists".
- ``glob_paths="absolute"``: glob matches are absolute, regular files only (deepagents' permission
  rules match absolute paths). ``"relative"`` returns paths relative to the searched directory,
  directories included.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import json
import shlex
import threading
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, Literal, TypeVar

from deepagents.backends.protocol import (
    EditResult,
    ExecuteResponse,
    FileDownloadResponse,
    FileInfo,
    FileUploadResponse,
    GlobResult,
    WriteResult,
)
from deepagents.backends.sandbox import BaseSandbox
from langgraph.config import get_config

from sandboxkit import _portal
from sandboxkit._collect import DEFAULT_MAX_OUTPUT
from sandboxkit._errors import CommandTimeoutError
from sandboxkit._sync_sandbox import Sandbox
from sandboxkit._types import ExecResult

__all__ = ["DEFAULT_TIMEOUT", "SandboxkitBackend"]

T = TypeVar("T")

#: Per-command limit when the caller gives none (the sandbox's own lifetime still applies).
DEFAULT_TIMEOUT = 30 * 60
#: Most matches a relative-style glob returns before it reports truncation.
GLOB_MAX_MATCHES = 10_000
#: Seconds a relative-style glob may walk.
GLOB_TIMEOUT = 60

GlobPaths = Literal["absolute", "relative"]

_GLOB_RELATIVE = """import base64, glob, json, os
root = base64.b64decode('{root}').decode()
pattern = base64.b64decode('{pattern}').decode()
if not os.path.isdir(root):
    print(json.dumps({{'error': 'not_a_directory' if os.path.exists(root) else 'path_not_found'}}))
    raise SystemExit(0)
hits = sorted(glob.glob(pattern, root_dir=root, recursive=True))
for hit in hits[:{limit}]:
    print(json.dumps({{'path': hit, 'is_dir': os.path.isdir(os.path.join(root, hit))}}))
if len(hits) > {limit}:
    print(json.dumps({{'truncated': True}}))
"""


class SandboxkitBackend(BaseSandbox):
    """A deepagents sandbox backend backed by a sandboxkit :class:`~sandboxkit.Sandbox` on any provider.

    Pass a live sandbox (the backend never closes it), or a factory such as
    ``sandboxkit.create_sandbox_factory(provider="modal", ...)``: then each conversation thread
    (langgraph ``thread_id``; one shared sandbox outside a thread) gets its own sandbox, created on
    first use and closed by :meth:`close` (or leaving ``with backend:``).
    """

    def __init__(
        self,
        sandbox: Sandbox | Callable[..., Sandbox],
        *,
        timeout: float | None = DEFAULT_TIMEOUT,
        max_output: int = DEFAULT_MAX_OUTPUT,
        overwrite: bool = True,
        glob_paths: GlobPaths = "absolute",
    ) -> None:
        """Wrap ``sandbox`` (or a factory of sandboxes).

        ``timeout`` is the per-command limit when the caller gives none (None: no limit but the
        sandbox's lifetime); ``max_output`` caps the bytes one command keeps. See the module
        docstring for ``overwrite`` and ``glob_paths``.
        """
        if isinstance(sandbox, Sandbox):
            self._fixed: Sandbox | None = sandbox
            self._factory: Callable[..., Sandbox] | None = None
        elif callable(sandbox):
            self._fixed, self._factory = None, sandbox
        else:
            raise TypeError(f"expected a sandboxkit.Sandbox or a factory of them, got {type(sandbox).__name__}")
        if glob_paths not in ("absolute", "relative"):
            raise ValueError(f"glob_paths must be 'absolute' or 'relative', got {glob_paths!r}")
        if timeout is not None and timeout <= 0:
            raise ValueError(f"timeout must be a positive number of seconds or None, got {timeout!r}")
        self._timeout = timeout
        self._max_output = max_output
        self._overwrite = overwrite
        self._glob_paths: GlobPaths = glob_paths
        self._owned: dict[str, Sandbox] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._lock = threading.Lock()

    # ------------------------------------------------------------ sandboxes
    @property
    def sandbox(self) -> Sandbox:
        """The sandbox serving the current call (created now, in factory mode, if this thread has none)."""
        if self._fixed is not None:
            return self._fixed
        assert self._factory is not None
        key = _thread_key()
        with self._lock:
            lock = self._locks.setdefault(key, threading.Lock())
        with lock:
            if key not in self._owned:
                self._owned[key] = self._factory()
            return self._owned[key]

    async def _asandbox(self) -> Sandbox:
        if self._fixed is not None:
            return self._fixed
        return await asyncio.to_thread(lambda: self.sandbox)

    @property
    def id(self) -> str:
        """The current sandbox's provider id."""
        return str(self.sandbox.id)

    def close(self) -> None:
        """Close every sandbox this backend created from its factory (a wrapped sandbox stays open)."""
        with self._lock:
            owned, self._owned = list(self._owned.values()), {}
        for sandbox in owned:
            sandbox.close()

    def __enter__(self) -> SandboxkitBackend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        target = repr(self._fixed) if self._fixed is not None else f"factory, {len(self._owned)} open"
        return f"<SandboxkitBackend {target}>"

    # ------------------------------------------------------------ commands
    def _limit(self, timeout: int | None) -> float | None:
        if timeout is None:
            return self._timeout
        if timeout < 0:
            raise ValueError(f"timeout must be non-negative, got {timeout}")
        return None if timeout == 0 else float(timeout)

    def execute(self, command: str, *, timeout: int | None = None) -> ExecuteResponse:
        """Run ``command`` under ``sh -c``; ``timeout=0`` means no per-command limit."""
        limit = self._limit(timeout)
        try:
            result = self.sandbox.execute(command, timeout=limit, max_output=self._max_output)
        except CommandTimeoutError as exc:
            return _timed_out(exc, limit)
        return _response(result)

    async def aexecute(self, command: str, *, timeout: int | None = None) -> ExecuteResponse:
        """Async ``execute``: runs on sandboxkit's loop, cancellable from the caller's."""
        limit = self._limit(timeout)
        sandbox = await self._asandbox()
        try:
            result = await _on_sandbox_loop(sandbox.aio.execute, command, timeout=limit, max_output=self._max_output)
        except CommandTimeoutError as exc:
            return _timed_out(exc, limit)
        return _response(result)

    # ------------------------------------------------------------ files
    def upload_files(self, files: list[tuple[str, bytes]]) -> list[FileUploadResponse]:
        """Write files (parents are created); one response per file, in order."""
        return [FileUploadResponse(path=r.path, error=r.error) for r in self.sandbox.upload_files(files)]

    async def aupload_files(self, files: list[tuple[str, bytes]]) -> list[FileUploadResponse]:
        """Async ``upload_files``."""
        sandbox = await self._asandbox()
        results = await _on_sandbox_loop(sandbox.aio.upload_files, files)
        return [FileUploadResponse(path=r.path, error=r.error) for r in results]

    def download_files(self, paths: list[str]) -> list[FileDownloadResponse]:
        """Read files; one response per path, in order, with content or error."""
        return [
            FileDownloadResponse(path=r.path, content=r.content, error=r.error)
            for r in self.sandbox.download_files(paths)
        ]

    async def adownload_files(self, paths: list[str]) -> list[FileDownloadResponse]:
        """Async ``download_files``."""
        sandbox = await self._asandbox()
        results = await _on_sandbox_loop(sandbox.aio.download_files, paths)
        return [FileDownloadResponse(path=r.path, content=r.content, error=r.error) for r in results]

    def write(self, file_path: str, content: str) -> WriteResult:
        """Write a text file through ``upload_files`` (parents are created)."""
        if not self._overwrite and self.execute(_exists_cmd(file_path)).exit_code == 0:
            return WriteResult(error=_exists_error(file_path))
        (response,) = self.upload_files([(file_path, content.encode("utf-8"))])
        return _write_result(file_path, response)

    async def awrite(self, file_path: str, content: str) -> WriteResult:
        """Async ``write``."""
        if not self._overwrite and (await self.aexecute(_exists_cmd(file_path))).exit_code == 0:
            return WriteResult(error=_exists_error(file_path))
        (response,) = await self.aupload_files([(file_path, content.encode("utf-8"))])
        return _write_result(file_path, response)

    def edit(self, file_path: str, old_string: str, new_string: str, replace_all: bool = False) -> EditResult:
        """Replace text in a file; the strings travel as uploaded files, never on a command line."""
        via_upload = getattr(super(), "_edit_via_upload", None)
        if not old_string or via_upload is None:
            return super().edit(file_path, old_string, new_string, replace_all)
        return via_upload(file_path, old_string, new_string, replace_all)  # type: ignore[no-any-return]

    async def aedit(self, file_path: str, old_string: str, new_string: str, replace_all: bool = False) -> EditResult:
        """Async ``edit``."""
        via_upload = getattr(super(), "_aedit_via_upload", None)
        if not old_string or via_upload is None:
            return await super().aedit(file_path, old_string, new_string, replace_all)
        return await via_upload(file_path, old_string, new_string, replace_all)  # type: ignore[no-any-return]

    def glob(self, pattern: str, path: str | None = None) -> GlobResult:
        """Files matching ``pattern`` under ``path`` (``/`` when omitted); see ``glob_paths``."""
        if self._glob_paths == "absolute":
            return super().glob(pattern, path)
        root = path or "/"
        try:
            result = self.sandbox.execute(_glob_argv(pattern, root), timeout=GLOB_TIMEOUT, max_output=self._max_output)
        except CommandTimeoutError:
            return _glob_timeout()
        return _parse_glob(result, root)

    async def aglob(self, pattern: str, path: str | None = None) -> GlobResult:
        """Async ``glob``."""
        if self._glob_paths == "absolute":
            return await super().aglob(pattern, path)
        root = path or "/"
        sandbox = await self._asandbox()
        try:
            result = await _on_sandbox_loop(
                sandbox.aio.execute, _glob_argv(pattern, root), timeout=GLOB_TIMEOUT, max_output=self._max_output
            )
        except CommandTimeoutError:
            return _glob_timeout()
        return _parse_glob(result, root)


def _thread_key() -> str:
    """The langgraph thread of the current call, or "" outside one."""
    try:
        config = get_config()
    except RuntimeError:
        return ""
    return str((config.get("configurable") or {}).get("thread_id") or "")


async def _on_sandbox_loop(func: Callable[..., Awaitable[T]], *args: Any, **kwargs: Any) -> T:
    """Await ``func`` on sandboxkit's own loop (where the sandbox lives) from any asyncio loop."""
    future = _portal.portal().start_task_soon(functools.partial(func, *args, **kwargs))
    return await asyncio.wrap_future(future)


def _response(result: ExecResult) -> ExecuteResponse:
    return ExecuteResponse(output=result.output, exit_code=result.exit_code, truncated=result.truncated)


def _timed_out(exc: CommandTimeoutError, limit: float | None) -> ExecuteResponse:
    partial = exc.result.output if exc.result is not None else ""
    note = (
        f"Error: Command timed out after {limit:g} seconds and was killed with all its child processes. "
        "For long-running commands, re-run with a larger timeout or run them in the background."
    )
    return ExecuteResponse(output=f"{partial}\n{note}" if partial else note, exit_code=124, truncated=False)


def _exists_cmd(path: str) -> str:
    quoted = shlex.quote(path)
    return f"[ -e {quoted} ] || [ -L {quoted} ]"


def _exists_error(path: str) -> str:
    return f"Cannot write to {path} because it already exists. Read and then make an edit, or write to a new path."


def _write_result(path: str, response: FileUploadResponse) -> WriteResult:
    if response.error:
        return WriteResult(error=f"Failed to write file '{path}': {response.error}")
    return WriteResult(path=path)


def _glob_argv(pattern: str, root: str) -> list[str]:
    script = _GLOB_RELATIVE.format(
        root=base64.b64encode(root.encode()).decode(),
        pattern=base64.b64encode(pattern.encode()).decode(),
        limit=GLOB_MAX_MATCHES,
    )
    return ["python3", "-c", script]


def _glob_timeout() -> GlobResult:
    return GlobResult(
        error=f"Error: glob timed out after {GLOB_TIMEOUT}s. Try a more specific pattern or a narrower path."
    )


def _parse_glob(result: ExecResult, root: str) -> GlobResult:
    matches: list[FileInfo] = []
    truncated = result.truncated
    for record in _json_lines(result.output):
        if record is None or "error" in record:
            reason = record["error"] if record else result.output.strip()[:300]
            return GlobResult(error=f"Error: glob in '{root}' failed: {reason}")
        if record.get("truncated"):
            truncated = True
        else:
            matches.append(FileInfo(path=str(record["path"]), is_dir=bool(record["is_dir"])))
    if result.exit_code != 0:
        return GlobResult(error=f"Error: glob in '{root}' failed: {result.output.strip()[:300]}")
    return GlobResult(matches=matches, truncated=truncated, truncation_reason="budget" if truncated else None)


def _json_lines(output: str) -> Iterator[dict[str, Any] | None]:
    """Each non-blank line as a JSON object, or None for a line that is not one."""
    for line in output.splitlines():
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError:
            yield None
            continue
        yield record if isinstance(record, dict) else None
