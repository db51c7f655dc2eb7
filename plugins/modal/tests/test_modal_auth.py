"""Credentials: missing or wrong Modal tokens fail fast with AUTHENTICATION_FAILED and say what to set."""

from __future__ import annotations

import time

import pytest

from sandboxkit import ErrorCode, Sandbox, SandboxError


def test_missing_tokens_fail_before_any_network_call(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MODAL_TOKEN_ID", raising=False)
    monkeypatch.delenv("MODAL_TOKEN_SECRET", raising=False)
    monkeypatch.setenv("MODAL_SERVER_URL", "http://127.0.0.1:9")  # nothing listens; must not be reached
    started = time.monotonic()
    with pytest.raises(SandboxError) as info:
        Sandbox.create(provider="modal")
    assert time.monotonic() - started < 5
    assert info.value.code == ErrorCode.AUTHENTICATION_FAILED
    assert "MODAL_TOKEN_ID" in info.value.message
    assert "MODAL_TOKEN_SECRET" in info.value.message
    assert "auth=" in info.value.message


def test_half_given_auth_names_the_missing_part(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MODAL_TOKEN_SECRET", raising=False)
    with pytest.raises(SandboxError) as info:
        Sandbox.create(provider="modal", auth={"token_id": "ak-only"})
    assert info.value.code == ErrorCode.AUTHENTICATION_FAILED
    assert "MODAL_TOKEN_SECRET" in info.value.message
    assert "ak-only" not in info.value.message


def test_unknown_auth_keys_are_refused() -> None:
    with pytest.raises(SandboxError) as info:
        Sandbox.create(provider="modal", auth={"token": "x"})
    assert info.value.code == ErrorCode.INVALID_ARGUMENT


@pytest.mark.usefixtures("modal_env")
def test_wrong_tokens_fail_fast_and_never_echo_the_secret() -> None:
    started = time.monotonic()
    with pytest.raises(SandboxError) as info:
        Sandbox.create(provider="modal", auth={"token_id": "ak-wrong", "token_secret": "as-wrong-secret"})
    elapsed = time.monotonic() - started
    assert info.value.code == ErrorCode.AUTHENTICATION_FAILED
    assert elapsed < 5, f"took {elapsed:.1f}s"
    assert "MODAL_TOKEN_ID" in info.value.message
    assert "as-wrong-secret" not in str(info.value)
    assert "as-wrong-secret" not in repr(info.value)


@pytest.mark.usefixtures("modal_env")
def test_wrong_env_tokens_fail_fast_for_lookups_too(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODAL_TOKEN_SECRET", "as-not-the-right-one")
    started = time.monotonic()
    with pytest.raises(SandboxError) as info:
        Sandbox.list(provider="modal")
    assert info.value.code == ErrorCode.AUTHENTICATION_FAILED
    assert time.monotonic() - started < 5


@pytest.mark.usefixtures("modal_env")
def test_explicit_auth_is_used(modal_emulator: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODAL_TOKEN_SECRET", "as-not-the-right-one")  # explicit auth wins over the env
    auth = {"token_id": modal_emulator["MODAL_TOKEN_ID"], "token_secret": modal_emulator["MODAL_TOKEN_SECRET"]}
    assert isinstance(Sandbox.list(provider="modal", auth=auth), list)
