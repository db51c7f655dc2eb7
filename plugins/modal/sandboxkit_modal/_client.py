"""Credentials and modal.Client instances: resolved per call, verified once, then reused."""

from __future__ import annotations

import threading
from collections.abc import Mapping

import anyio
import modal
import modal.config

from sandboxkit.spi import ErrorCode, SandboxError
from sandboxkit_modal._errors import CREDENTIALS_HINT, PROVIDER, translate

#: How long the first call of a new client may take before the server counts as unreachable.
HELLO_TIMEOUT = 20.0
AUTH_KEYS = frozenset({"token_id", "token_secret"})

Key = tuple[str, str, str]


def check_auth(auth: Mapping[str, str]) -> None:
    """Reject ``auth`` entries the Modal provider does not know."""
    unknown = sorted(set(auth) - AUTH_KEYS)
    if unknown:
        raise SandboxError(
            ErrorCode.INVALID_ARGUMENT,
            f"auth for provider 'modal' takes token_id and token_secret, not {', '.join(unknown)}",
            provider=PROVIDER,
        )


def credentials(auth: Mapping[str, str]) -> Key:
    """(server URL, token id, token secret) from ``auth``, else MODAL_TOKEN_* / the modal profile."""
    token_id = auth.get("token_id") or modal.config.config.get("token_id")
    token_secret = auth.get("token_secret") or modal.config.config.get("token_secret")
    missing = [n for n, v in (("MODAL_TOKEN_ID", token_id), ("MODAL_TOKEN_SECRET", token_secret)) if not v]
    if missing:
        raise SandboxError(
            ErrorCode.AUTHENTICATION_FAILED,
            f"no Modal credentials found ({' and '.join(missing)} unset); {CREDENTIALS_HINT}",
            provider=PROVIDER,
        )
    return str(modal.config.config.get("server_url")), str(token_id), str(token_secret)


class ClientCache:
    """One verified modal.Client per (server, credentials); env changes take effect on the next call."""

    def __init__(self) -> None:
        self._clients: dict[Key, modal.Client] = {}
        self._lock = threading.Lock()

    async def get(self, auth: Mapping[str, str]) -> modal.Client:
        key = credentials(auth)
        with self._lock:
            client = self._clients.get(key)
        if client is not None:
            return client
        client = await self._open(key)
        with self._lock:
            winner = self._clients.setdefault(key, client)
        if winner is not client:
            await client.close.aio()
        return winner

    async def _open(self, key: Key) -> modal.Client:
        server_url, token_id, token_secret = key
        with translate():
            client = await modal.Client.from_credentials.aio(token_id, token_secret)
        try:
            with anyio.fail_after(HELLO_TIMEOUT), translate():
                await client.hello.aio()  # type: ignore[no-untyped-call]
        except TimeoutError:
            await client.close.aio()
            raise SandboxError(
                ErrorCode.PROVIDER_UNAVAILABLE,
                f"Modal at {server_url} did not answer within {HELLO_TIMEOUT:g}s; check the network and "
                "MODAL_SERVER_URL",
                provider=PROVIDER,
            ) from None
        except BaseException:
            with anyio.CancelScope(shield=True):
                await client.close.aio()
            raise
        return client

    async def aclose(self) -> None:
        with self._lock:
            clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            # the blocking call on anyio's worker thread: at interpreter exit the loop's default executor,
            # which the SDK's ``.aio()`` needs, may already be shut down (and its coroutine left unawaited)
            await anyio.to_thread.run_sync(client.close)
