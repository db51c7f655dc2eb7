"""Emulation of Modal's in-container file tool, ``/__modal/.bin/modal-sandbox-fs-tools <json>``.

The modal SDK implements ``sandbox.filesystem.*`` as an exec of that binary with one JSON command;
it prints results on stdout and, on failure, exits 1 with ``{"error_kind", "message"}`` on stderr.
Here each command runs emulator-side through the Docker sandbox: reads through its file API, writes,
listings and metadata through one small POSIX shell script (works on busybox images too).
"""

from __future__ import annotations

import json
import posixpath
import stat
from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any, TypeVar

from sandboxkit import AsyncSandbox, ErrorCode, FileOperationError, SandboxError
from sandboxkit_modal.emulator._process import Process

if TYPE_CHECKING:
    from sandboxkit_modal.emulator._state import EmuSandbox

T = TypeVar("T")
FS_TOOLS = "/__modal/.bin/modal-sandbox-fs-tools"
OP_TIMEOUT = 120.0

# $1 op, $2 path, $3 flag. Records are NUL-separated triples: stat line, path, symlink target.
_SCRIPT = r"""
op=$1; p=$2; flag=$3
rec() { printf '%s\0%s\0%s\0' "$(stat -c '%F|%s|%f|%U|%G|%Y' -- "$1")" "$1" "$(readlink -- "$1" 2>/dev/null)"; }
case $op in
Stat) stat -c '%F' -- "$p" >/dev/null || exit 1; rec "$p" ;;
ListFiles)
  [ -d "$p" ] || { stat -c '%F' -- "$p" >/dev/null || exit 1; echo "$p: Not a directory" >&2; exit 1; }
  d=${p%/}
  for f in "$d"/* "$d"/.[!.]* "$d"/..?*; do [ -e "$f" ] || [ -L "$f" ] || continue; rec "$f"; done ;;
WriteFile)
  [ -d "$p" ] && { echo "$p: Is a directory" >&2; exit 1; }
  mkdir -p -- "$(dirname -- "$p")" && cat >"$p" ;;
MakeDirectory) if [ "$flag" = 1 ]; then mkdir -p -- "$p"; else mkdir -- "$p"; fi ;;
Remove)
  [ -e "$p" ] || [ -L "$p" ] || { echo "$p: No such file or directory" >&2; exit 1; }
  if [ -d "$p" ] && [ ! -L "$p" ]; then
    if [ "$flag" = 1 ]; then rm -rf -- "$p"; else rmdir -- "$p"; fi
  else rm -f -- "$p"; fi ;;
esac
"""

#: strerror texts (glibc and busybox agree) -> fs-tools error kinds
_KINDS = (
    ("No such file or directory", "NotFound"),
    ("Not a directory", "NotDirectory"),
    ("Is a directory", "IsDirectory"),
    ("Permission denied", "PermissionDenied"),
    ("Operation not permitted", "PermissionDenied"),
    ("Read-only file system", "PermissionDenied"),
    ("File exists", "PathAlreadyExists"),
    ("Directory not empty", "DirectoryNotEmpty"),
)
#: sandboxkit file error kinds -> (fs-tools error kind, strerror text)
_FILE_KINDS = {
    "file_not_found": ("NotFound", "No such file or directory"),
    "is_directory": ("IsDirectory", "Is a directory"),
    "permission_denied": ("PermissionDenied", "Permission denied"),
    "invalid_path": ("NotDirectory", "Not a directory"),
}


class FsError(Exception):
    """One failed fs-tools command."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message


class FsTool(Process):
    """One fs-tools command. WriteFile takes its data on stdin; the others run at once."""

    def __init__(self, sandbox: EmuSandbox, box: AsyncSandbox, command: str) -> None:
        super().__init__(sandbox)
        self.box = box
        self._data = bytearray()
        try:
            parsed = json.loads(command)
            ((self.op, args),) = parsed.items()
            self.args: dict[str, Any] = dict(args)
            self.path = str(self.args["path"])
        except (ValueError, TypeError, KeyError, AttributeError):
            self.op, self.args, self.path = "", {}, ""
        if self.op != "WriteFile":
            self.spawn(self._run())

    async def write_stdin(self, offset: int, data: bytes, eof: bool) -> None:
        data = self.skip_written(offset, data)
        if self.stdin_closed or self.exit_code is not None:
            return
        self._data += data
        self.stdin_written += len(data)
        if eof:
            self.stdin_closed = True
            if self.op == "WriteFile":
                self.spawn(self._run())

    async def _run(self) -> None:
        self.sandbox.busy += 1
        try:
            self.stdout.write(await self._dispatch())
            self.exit(0)
        except FsError as exc:
            self._fail(exc.kind, exc.message)
        except Exception as exc:  # never leave a client waiting on a process that cannot end
            self._fail("Other", f"{type(exc).__name__}: {exc}")
        finally:
            self.sandbox.busy -= 1
            self.sandbox.touch()

    def _fail(self, kind: str, message: str) -> None:
        self.stderr.write(json.dumps({"error_kind": kind, "message": message}).encode())
        self.exit(1)

    async def _dispatch(self) -> bytes:
        if not self.path.startswith("/"):
            raise FsError("InvalidPath", f"not a valid absolute path: {self.path!r}")
        if self.op == "ReadFile":
            return await self._files(self.box.read_file(self.path))
        if self.op == "WriteFile":  # a shell write, so a directory in the way fails as on Modal
            await self._shell("WriteFile", stdin=bytes(self._data))
            return b""
        if self.op == "Stat":
            (info,) = _records(await self._shell("Stat"))
            return json.dumps(info).encode()
        if self.op == "ListFiles":
            return json.dumps(_records(await self._shell("ListFiles"))).encode()
        if self.op == "MakeDirectory":
            await self._shell("MakeDirectory", "1" if self.args.get("parents") else "0")
            return b""
        if self.op == "Remove":
            await self._shell("Remove", "1" if self.args.get("recursive") else "0")
            return b""
        raise FsError("NotSupported", f"{self.op or 'this command'} is not supported by the Modal emulator")

    async def _files(self, call: Awaitable[T]) -> T:
        try:
            return await call
        except FileOperationError as exc:
            kind, text = _FILE_KINDS.get(exc.kind or "", ("Other", exc.message))
            raise FsError(kind, text) from None
        except SandboxError as exc:
            raise FsError("Other", exc.message) from None

    async def _shell(self, op: str, flag: str = "", stdin: bytes | None = None) -> bytes:
        argv = ["sh", "-c", _SCRIPT, "sh", op, self.path, flag]
        try:
            result = await self.box.execute(argv, stdin=stdin, timeout=OP_TIMEOUT)
        except SandboxError as exc:
            if exc.code == ErrorCode.SANDBOX_NOT_FOUND:
                self.sandbox.lost(exc.message)
            raise FsError("Other", exc.message) from None
        if result.exit_code != 0:
            text = result.stderr.strip() or f"exit code {result.exit_code}"
            kind = next((k for needle, k in _KINDS if needle in text), "Other")
            raise FsError(kind, text.splitlines()[-1])
        return result.stdout_bytes


def _records(raw: bytes) -> list[dict[str, Any]]:
    fields = raw.split(b"\0")
    out = []
    for i in range(0, len(fields) - 2, 3):
        line, path, target = (f.decode("utf-8", "surrogateescape") for f in fields[i : i + 3])
        _kind, size, mode, owner, group, mtime = line.split("|")
        st_mode = int(mode, 16)
        out.append(
            {
                "name": posixpath.basename(path.rstrip("/")) or "/",
                "path": posixpath.normpath(path),
                "type": "directory" if stat.S_ISDIR(st_mode) else "symlink" if stat.S_ISLNK(st_mode) else "file",
                "size": int(size),
                "mode": st_mode,
                "permissions": stat.filemode(st_mode),
                "owner": owner,
                "group": group,
                "modified_time": int(mtime),
                "symlink_target": target if stat.S_ISLNK(st_mode) else None,
            }
        )
    return out
