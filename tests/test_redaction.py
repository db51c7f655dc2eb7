"""Secret values never reach a SandboxError's message, str, repr or args; ``.result`` keeps the raw output.

No Docker: errors built directly, and COMMAND_FAILED from a sandbox attached to a fake handle.
"""

from __future__ import annotations

import pickle
import traceback
import uuid
from pathlib import Path
from typing import Any

import anyio
import pytest
from pydantic import BaseModel

from sandboxkit import AsyncSandbox, ErrorCode, SandboxError
from sandboxkit._errors import MIN_SECRET_LENGTH, remember_secret_values
from sandboxkit.secrets import create_secret, get_secret
from sandboxkit.spi import ExecExit, ExecRequest, OutputCallback, Provider, SandboxHandle, SandboxSpec, SandboxState


def _secret() -> str:
    return f"tok-{uuid.uuid4().hex}"


def _everything(err: SandboxError) -> str:
    """Every text of the error a log line or a traceback could show."""
    lines = traceback.format_exception(err)
    return "\n".join([str(err), repr(err), err.message, *map(str, err.args), *lines])


class Echo(SandboxHandle):
    """Runs nothing: prints the command's env values and its argv, and exits 3."""

    id = "sb-echo"

    def __init__(self, printed: str) -> None:
        self.printed = printed

    async def exec(self, request: ExecRequest, on_output: OutputCallback) -> ExecExit:
        await on_output("stdout", (self.printed + " " + " ".join(request.env.values())).encode())
        return ExecExit(exit_code=3)

    async def read_file(self, path: str) -> bytes:
        return b""

    async def write_file(self, path: str, data: bytes) -> None:
        pass

    async def terminate(self) -> None:
        pass

    async def status(self) -> SandboxState:
        return SandboxState.RUNNING


class Fake(Provider):
    name = "fake-redaction"

    async def create(self, spec: SandboxSpec, options: BaseModel) -> SandboxHandle:
        raise AssertionError

    async def from_id(self, sandbox_id: str) -> SandboxHandle:
        raise AssertionError


def _failed(printed: str, **kw: Any) -> SandboxError:
    async def run() -> None:
        await AsyncSandbox._attach(Fake(), Echo(printed)).execute("env; exit 3", check=True, **kw)

    with pytest.raises(SandboxError) as err:
        anyio.run(run)
    assert err.value.code == ErrorCode.COMMAND_FAILED
    return err.value


def test_remembered_values_are_redacted_everywhere() -> None:
    early, late = _secret(), _secret()
    remember_secret_values([early])
    err = SandboxError(ErrorCode.COMMAND_FAILED, f"boom {early} and {late}")
    assert early not in _everything(err) and "***" in err.message
    again = pickle.loads(pickle.dumps(err))
    assert early not in _everything(again)
    remember_secret_values([late])  # learnt after the error was made: str, repr and tracebacks still hide it
    shown = [str(err), repr(err), "".join(traceback.format_exception(err))]
    assert not any(late in text for text in shown)


def test_short_values_are_left_alone_and_the_longest_match_wins() -> None:
    short = "x" * (MIN_SECRET_LENGTH - 1)
    inner = _secret()
    outer = f"pre-{inner}-post"
    remember_secret_values([short, inner, outer])
    err = SandboxError(ErrorCode.INVALID_ARGUMENT, f"{short} {outer}")
    assert err.message == f"{short} ***"


def test_values_read_from_the_store_are_redacted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    value = _secret()
    (tmp_path / "sandboxkit" / "secrets").mkdir(parents=True)
    (tmp_path / "sandboxkit" / "secrets" / "api.env").write_text(f"API_TOKEN={value}\n")  # as another process wrote it
    assert SandboxError(ErrorCode.COMMAND_FAILED, value).message == value  # not read yet: unknown here
    assert get_secret("api") == {"API_TOKEN": value}
    assert value not in _everything(SandboxError(ErrorCode.COMMAND_FAILED, f"API_TOKEN={value}"))
    other = _secret()
    create_secret("made", {"K": other})
    assert other not in str(SandboxError(ErrorCode.COMMAND_FAILED, other))


def test_command_failed_redacts_secrets_and_per_call_env_but_result_keeps_them() -> None:
    secret, per_call = _secret(), _secret()
    remember_secret_values([secret])
    err = _failed(f"SECRET={secret}", env={"TOKEN": per_call})
    text = _everything(err)
    assert secret not in text and per_call not in text and "***" in text
    result = err.result
    assert result is not None
    assert secret in result.output and per_call in result.output


def test_no_tail_of_a_secret_survives_the_message_cut() -> None:
    secret = _secret()
    remember_secret_values([secret])
    err = _failed(secret + "y" * (500 - 10))  # the message keeps the last 500 characters
    assert secret[-10:] not in err.message and secret[-6:] not in err.message
