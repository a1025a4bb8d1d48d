"""Replay nonces (RFC 8555 §6.5): free to hand out, one store write to spend.

A nonce is `expiry || random || MAC(expiry || random)` under a key every process loads once
from the store, so any process can issue and check nonces. Spending one records it in the
store's spent-nonce table, whose key refuses a second spend in any process. Spent rows are
only needed until their expiry, after which the MAC/expiry check alone refuses them.
A nonce is decoded strictly and spent under its canonical spelling, so no alternative
spelling of one nonce (trailing bits, padding, other alphabets) can be spent again.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import struct
import time
from datetime import UTC, datetime
from typing import Protocol

from acme_server.domain.problems import AcmeProblem, ProblemType
from acme_server.encoding import b64url_decode, b64url_encode

_EXPIRY_BYTES = 8
_RANDOM_BYTES = 16
_MAC_BYTES = 16


class SpentNonceStore(Protocol):
    """Where spent nonces are remembered (`store.nonces.SpentNonces` in the server)."""

    async def spend(self, value: str, expires_at: datetime) -> bool: ...

    async def purge_expired(self) -> int: ...


class NonceService:
    """Issues nonces and spends them exactly once, or raises `badNonce`."""

    def __init__(self, spent: SpentNonceStore, key: bytes, lifetime_seconds: int) -> None:
        self._spent = spent
        self._key = key
        self._lifetime = lifetime_seconds

    def issue(self) -> str:
        body = struct.pack(">Q", int(time.time()) + self._lifetime) + secrets.token_bytes(
            _RANDOM_BYTES
        )
        return b64url_encode(body + self._mac(body))

    async def consume(self, nonce: object) -> None:
        """Spend a nonce exactly once, or raise badNonce."""
        if not isinstance(nonce, str) or not nonce:
            raise AcmeProblem(ProblemType.BAD_NONCE, "JWS has no anti-replay nonce")
        try:
            raw = b64url_decode(nonce)
        except ValueError:
            raise AcmeProblem(
                ProblemType.BAD_NONCE, "nonce is not canonical unpadded base64url"
            ) from None
        if len(raw) != _EXPIRY_BYTES + _RANDOM_BYTES + _MAC_BYTES:
            raise AcmeProblem(ProblemType.BAD_NONCE, "nonce was not issued by this server")
        body, mac = raw[:-_MAC_BYTES], raw[-_MAC_BYTES:]
        if not hmac.compare_digest(mac, self._mac(body)):
            raise AcmeProblem(ProblemType.BAD_NONCE, "nonce was not issued by this server")
        (expiry,) = struct.unpack(">Q", body[:_EXPIRY_BYTES])
        if expiry < time.time():
            raise AcmeProblem(
                ProblemType.BAD_NONCE, "nonce has expired; use the fresh Replay-Nonce"
            )
        if not await self._spent.spend(b64url_encode(raw), datetime.fromtimestamp(expiry, UTC)):
            raise AcmeProblem(ProblemType.BAD_NONCE, "nonce has already been used")

    async def purge_expired(self) -> int:
        return await self._spent.purge_expired()

    def _mac(self, body: bytes) -> bytes:
        return hmac.new(self._key, body, hashlib.sha256).digest()[:_MAC_BYTES]
