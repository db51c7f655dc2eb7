"""The emulator's credentials: one accepted token pair, and the short-lived JWTs it hands out."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Mapping

from grpclib import GRPCError, Status

#: Lifetime of a JWT handed out for V2 calls and the task command router.
JWT_TTL = 3600


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class Credentials:
    """Checks control-plane metadata and issues/verifies JWTs (HMAC-signed with a per-run key)."""

    def __init__(self, token_id: str | None = None, token_secret: str | None = None) -> None:
        self.token_id = token_id or f"ak-emu-{secrets.token_hex(8)}"
        self.token_secret = token_secret or f"as-emu-{secrets.token_hex(16)}"
        self._key = secrets.token_bytes(32)

    def check_token(self, metadata: Mapping[str, str]) -> None:
        """Raise UNAUTHENTICATED unless the request carries the accepted token pair."""
        token_id = metadata.get("x-modal-token-id", "")
        token_secret = metadata.get("x-modal-token-secret", "")
        ok = hmac.compare_digest(token_id.encode(), self.token_id.encode()) and hmac.compare_digest(
            token_secret.encode(), self.token_secret.encode()
        )
        if not ok:
            raise GRPCError(
                Status.UNAUTHENTICATED,
                "Invalid token: this Modal emulator accepts only the MODAL_TOKEN_ID/MODAL_TOKEN_SECRET "
                "pair it printed at startup",
            )

    def issue_jwt(self, subject: str) -> str:
        """A JWT (``header.payload.signature``) with ``exp``, as the modal client expects."""
        header = _b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
        payload = _b64(json.dumps({"sub": subject, "exp": int(time.time()) + JWT_TTL}).encode())
        signature = hmac.new(self._key, f"{header}.{payload}".encode(), hashlib.sha256).digest()
        return f"{header}.{payload}.{_b64(signature)}"

    def check_bearer(self, metadata: Mapping[str, str]) -> None:
        """Raise UNAUTHENTICATED unless the request carries a live JWT this emulator issued."""
        auth = metadata.get("authorization", "")
        token = auth.removeprefix("Bearer ").strip()
        parts = token.split(".")
        if len(parts) == 3:
            expected = hmac.new(self._key, f"{parts[0]}.{parts[1]}".encode(), hashlib.sha256).digest()
            try:
                padded = parts[1] + "=" * (-len(parts[1]) % 4)
                claims = json.loads(base64.urlsafe_b64decode(padded))
            except ValueError:
                claims = {}
            if hmac.compare_digest(_b64(expected), parts[2]) and claims.get("exp", 0) > time.time():
                return
        raise GRPCError(Status.UNAUTHENTICATED, "missing, expired or foreign task router token")
