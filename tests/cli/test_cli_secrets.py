"""``sandboxkit secret create|ls|rm``: values go in, and are never printed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sandboxkit.cli import main
from sandboxkit.secrets import get_secret


@pytest.fixture(autouse=True)
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    return tmp_path


def test_create_from_pairs_environment_and_dotenv(
    store: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    dotenv = store / "extra.env"
    dotenv.write_text("FROM_FILE='file value'\n")
    monkeypatch.setenv("FROM_SHELL", "shell-value-123")
    assert main(["secret", "create", "keys", "A=one=1", "FROM_SHELL", "--from-dotenv", str(dotenv)]) == 0
    assert get_secret("keys") == {"FROM_FILE": "file value", "A": "one=1", "FROM_SHELL": "shell-value-123"}
    out = capsys.readouterr()
    assert out.out == "keys\n"
    assert "shell-value-123" not in out.err
    assert "one=1" not in out.err


def test_ls_prints_names_and_keys_only(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["secret", "create", "db", "USER=admin", "PASSWORD=hunter2-very-secret"]) == 0
    capsys.readouterr()
    assert main(["secret", "ls"]) == 0
    text = capsys.readouterr().out
    assert "db" in text
    assert "PASSWORD" in text
    assert "hunter2" not in text
    assert main(["secret", "ls", "--json"]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert row["name"] == "db"
    assert row["keys"] == ["USER", "PASSWORD"]
    assert "hunter2" not in json.dumps(row)


def test_overwrite_needs_force_and_rm_removes(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["secret", "create", "s", "K=1"]) == 0
    assert main(["secret", "create", "s", "K=2"]) == 3
    assert "ALREADY_EXISTS" in capsys.readouterr().err
    assert main(["secret", "create", "s", "K=2", "--force"]) == 0
    assert get_secret("s") == {"K": "2"}
    assert main(["secret", "rm", "s"]) == 0
    assert main(["secret", "rm", "s"]) == 3
    assert "no secret named 's'" in capsys.readouterr().err


def test_a_key_missing_from_the_environment_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["secret", "create", "s", "SURELY_NOT_SET_ANYWHERE"]) == 2
    assert "SURELY_NOT_SET_ANYWHERE=VALUE" in capsys.readouterr().err
