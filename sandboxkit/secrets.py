"""The local secret store: named sets of environment variables, kept out of every sandbox config.

One dotenv file per secret name, mode 0600, in a 0700 directory:
``$XDG_CONFIG_HOME/sandboxkit/secrets`` (else ``~/.config/sandboxkit/secrets``). Providers that
run sandboxes locally (Docker, the Modal emulator) resolve ``secrets=[...]`` names here and inject
the values per command. Manage it with ``sandboxkit secret create NAME KEY=VALUE...|ls|rm``.

Nothing here ever puts a value into a message, a log line or a ``repr``.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import re
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from dotenv import dotenv_values

from sandboxkit._errors import ErrorCode, SandboxError, remember_secret_values

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_SUFFIX = ".env"


@dataclass(frozen=True, kw_only=True)
class SecretInfo:
    """A stored secret as ``list_secrets`` reports it: its name and keys, never its values."""

    name: str
    keys: tuple[str, ...]
    updated_at: dt.datetime


def secrets_dir() -> Path:
    """Where the store lives: ``$XDG_CONFIG_HOME/sandboxkit/secrets``, else ``~/.config/sandboxkit/secrets``."""
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return Path(base) / "sandboxkit" / "secrets"


def _path(name: str) -> Path:
    if not isinstance(name, str) or not _NAME.match(name):
        raise SandboxError(
            ErrorCode.INVALID_ARGUMENT,
            f"secret name {name!r} is invalid; use 1-64 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit",
        )
    return secrets_dir() / f"{name}{_SUFFIX}"


def _check_values(name: str, values: Mapping[str, str]) -> None:
    if not values:
        raise SandboxError(ErrorCode.INVALID_ARGUMENT, f"secret {name!r} needs at least one KEY=VALUE")
    for key, value in values.items():
        if not isinstance(key, str) or not _KEY.match(key):
            raise SandboxError(
                ErrorCode.INVALID_ARGUMENT, f"secret key {key!r} must match [A-Za-z_][A-Za-z0-9_]* (an env var name)"
            )
        if not isinstance(value, str) or "\x00" in value:
            raise SandboxError(
                ErrorCode.INVALID_ARGUMENT, f"the value of {key} must be a string without NUL bytes (value not shown)"
            )


_ESCAPES = str.maketrans({"\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r"})


def _dotenv(values: Mapping[str, str]) -> str:
    # double quotes, with \\ " \n \r escaped: one line per key, read back verbatim by python-dotenv
    return "".join(f'{key}="{value.translate(_ESCAPES)}"\n' for key, value in values.items())


def create_secret(name: str, values: Mapping[str, str], *, overwrite: bool = False) -> Path:
    """Store ``values`` under ``name`` (file mode 0600); ALREADY_EXISTS unless ``overwrite``."""
    path = _path(name)
    _check_values(name, values)
    remember_secret_values(values.values())
    if path.exists() and not overwrite:
        raise SandboxError(
            ErrorCode.ALREADY_EXISTS,
            f"secret {name!r} already exists; pass --force (overwrite=True) to replace it, "
            f"or `sandboxkit secret rm {name}`",
        )
    directory = path.parent
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(directory, 0o700)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{name}.", suffix=".tmp")  # created 0600
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(_dotenv(values))
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return path


def get_secret(name: str) -> dict[str, str]:
    """The key/value pairs stored under ``name``; INVALID_ARGUMENT naming the fix when there is none."""
    path = _path(name)
    if not path.is_file():
        raise SandboxError(
            ErrorCode.INVALID_ARGUMENT,
            f"no secret named {name!r} in the local store ({secrets_dir()}); "
            f"create it with `sandboxkit secret create {name} KEY=VALUE...`",
        )
    parsed = dotenv_values(path, interpolate=False, encoding="utf-8")
    values = {k: v for k, v in parsed.items() if v is not None}
    remember_secret_values(values.values())  # from now on no SandboxError message shows them
    return values


def resolve_secrets(names: Iterable[str]) -> dict[str, str]:
    """All variables of ``names`` merged in order (a later secret wins a shared key)."""
    merged: dict[str, str] = {}
    for name in names:
        merged.update(get_secret(name))
    return merged


def remember_local_secrets(names: Iterable[str]) -> None:
    """Read the secrets of ``names`` that the local store holds, so errors redact their values.

    For providers whose secrets live elsewhere (Modal) a missing name is no error here.
    """
    for name in names:
        with contextlib.suppress(SandboxError):
            get_secret(name)


def list_secrets() -> list[SecretInfo]:
    """Every stored secret, by name, with its keys (never its values)."""
    directory = secrets_dir()
    if not directory.is_dir():
        return []
    found = []
    for path in sorted(directory.glob(f"*{_SUFFIX}")):
        name = path.name[: -len(_SUFFIX)]
        if not _NAME.match(name):
            continue
        keys = tuple(k for k, v in dotenv_values(path, interpolate=False, encoding="utf-8").items() if v is not None)
        updated = dt.datetime.fromtimestamp(path.stat().st_mtime, dt.UTC)
        found.append(SecretInfo(name=name, keys=keys, updated_at=updated))
    return found


def delete_secret(name: str) -> None:
    """Remove a stored secret; INVALID_ARGUMENT when there is none by that name."""
    path = _path(name)
    try:
        path.unlink()
    except FileNotFoundError:
        raise SandboxError(
            ErrorCode.INVALID_ARGUMENT, f"no secret named {name!r} in the local store ({secrets_dir()})"
        ) from None


__all__ = [
    "SecretInfo",
    "create_secret",
    "delete_secret",
    "get_secret",
    "list_secrets",
    "remember_local_secrets",
    "resolve_secrets",
    "secrets_dir",
]
