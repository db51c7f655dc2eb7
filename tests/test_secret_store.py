"""The local secret store: exact round trips, 0600 files, clear errors that never echo a value."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from sandboxkit import ErrorCode, SandboxError
from sandboxkit.secrets import (
    create_secret,
    delete_secret,
    get_secret,
    list_secrets,
    resolve_secrets,
    secrets_dir,
)

TRICKY = {
    "QUOTES": """it's "quoted" 'twice'""",
    "BACKSLASH": "C:\\path\\to\\n\\'",
    "NEWLINES": "line1\nline2\r\nline3\n",
    "DOLLARS": "$HOME ${HOME} $(id) `id`",
    "HASH": "value # not a comment",
    "EQUALS": "a=b=c",
    "SPACES": "  padded  ",
    "UNICODE": "pässwört ✓ 鍵",
    "EMPTY": "",
}


@pytest.fixture(autouse=True)
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    return tmp_path / "sandboxkit" / "secrets"


def test_values_round_trip_exactly(store: Path) -> None:
    path = create_secret("tricky", TRICKY)
    assert path == store / "tricky.env"
    assert get_secret("tricky") == TRICKY


def test_files_are_private(store: Path) -> None:
    create_secret("private", {"K": "v"})
    assert stat.S_IMODE(os.stat(store / "private.env").st_mode) == 0o600
    assert stat.S_IMODE(os.stat(store).st_mode) == 0o700
    assert [p.name for p in store.iterdir()] == ["private.env"]  # no temp file left behind


def test_the_store_defaults_to_the_users_config_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("XDG_CONFIG_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert secrets_dir() == tmp_path / "home" / ".config" / "sandboxkit" / "secrets"


def test_create_refuses_to_overwrite_unless_asked() -> None:
    create_secret("once", {"K": "first"})
    with pytest.raises(SandboxError) as err:
        create_secret("once", {"K": "second"})
    assert err.value.code == ErrorCode.ALREADY_EXISTS
    assert "--force" in err.value.message
    create_secret("once", {"K": "second"}, overwrite=True)
    assert get_secret("once") == {"K": "second"}


@pytest.mark.parametrize("name", ["", "../escape", ".hidden", "a/b", "x" * 65, "sp ace"])
def test_bad_names_are_invalid(name: str) -> None:
    with pytest.raises(SandboxError) as err:
        create_secret(name, {"K": "v"})
    assert err.value.code == ErrorCode.INVALID_ARGUMENT


def test_bad_keys_and_values_are_invalid_and_never_echoed() -> None:
    with pytest.raises(SandboxError) as key:
        create_secret("s", {"1BAD": "v"})
    assert key.value.code == ErrorCode.INVALID_ARGUMENT
    assert "1BAD" in key.value.message
    with pytest.raises(SandboxError) as value:
        create_secret("s", {"K": "top-secret\x00value"})
    assert value.value.code == ErrorCode.INVALID_ARGUMENT
    assert "top-secret" not in str(value.value)
    with pytest.raises(SandboxError) as empty:
        create_secret("s", {})
    assert empty.value.code == ErrorCode.INVALID_ARGUMENT


def test_missing_secrets_say_how_to_create_them() -> None:
    with pytest.raises(SandboxError) as err:
        get_secret("absent")
    assert err.value.code == ErrorCode.INVALID_ARGUMENT
    assert "sandboxkit secret create absent" in err.value.message
    with pytest.raises(SandboxError):
        delete_secret("absent")


def test_list_shows_keys_never_values_and_delete_removes() -> None:
    create_secret("b-secret", {"TOKEN": "hidden-1"})
    create_secret("a-secret", {"USER": "u", "PASSWORD": "hidden-2"})
    rows = list_secrets()
    assert [(r.name, r.keys) for r in rows] == [("a-secret", ("USER", "PASSWORD")), ("b-secret", ("TOKEN",))]
    assert "hidden" not in repr(rows)
    delete_secret("a-secret")
    assert [r.name for r in list_secrets()] == ["b-secret"]


def test_later_secrets_win_a_shared_key() -> None:
    create_secret("base", {"A": "1", "B": "base"})
    create_secret("override", {"B": "override"})
    assert resolve_secrets(["base", "override"]) == {"A": "1", "B": "override"}
    assert resolve_secrets([]) == {}
