"""Replay nonces (RFC 8555 §6.5): cheap to hand out, spent exactly once.

A nonce is `expiry || token || MAC(expiry || token)` under a key every process loads once
from the store. The token comes from a ledger, which also records the one spend:

* `WindowLedger` (the default): a counter from the worker processes' shared region
  (`shared_region`); spending flips a bit in shared memory, no store write. Nonces are good
  on any worker of this `serve`, and only there.
* `store.nonces.SpentNonces` (`--nonce-scope store`): a random token, spent by an insert
  into the store's spent-nonce table, whose key refuses a second spend in any process on the
  store: for several servers behind a load balancer that does not keep a client on one.

A nonce is decoded strictly before anything else, so no alternative spelling of one nonce
(trailing bits, padding, other alphabets) reaches a ledger.
"""

from __future__ import annotations

import hashlib
import hmac
import struct
import time
from datetime import UTC, datetime
from typing import Protocol

from acme_server.domain.problems import AcmeProblem, ProblemType
from acme_server.encoding import b64url_decode, b64url_encode
from acme_server.shared_region import SharedRegion

_EXPIRY_BYTES = 8
TOKEN_BYTES = 16
_MAC_BYTES = 16


class NonceLedger(Protocol):
    """Hands out nonce tokens and records each one's single spend."""

    def new_token(self) -> bytes: ...

    async def spend(self, token: bytes, expires_at: datetime) -> bool: ...

    async def purge_expired(self) -> int: ...


class WindowLedger:
    """Tokens are `epoch || counter` of the shared region; a spend is a bit in it."""

    def __init__(self, region: SharedRegion) -> None:
        self._region = region
        self._epoch = region.epoch

    def new_token(self) -> bytes:
        return self._epoch + struct.pack(">Q", self._region.next_nonce())

    async def spend(self, token: bytes, expires_at: datetime) -> bool:
        if token[:8] != self._epoch:
            return False  # issued before this server started
        return self._region.spend_nonce(struct.unpack(">Q", token[8:])[0])

    async def purge_expired(self) -> int:
        return 0


class NonceService:
    """Issues nonces and spends them exactly once, or raises `badNonce`."""

    def __init__(self, ledger: NonceLedger, key: bytes, lifetime_seconds: int) -> None:
        self._ledger = ledger
        self._key = key
        self._lifetime = lifetime_seconds

    def issue(self) -> str:
        body = struct.pack(">Q", int(time.time()) + self._lifetime) + self._ledger.new_token()
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
        if len(raw) != _EXPIRY_BYTES + TOKEN_BYTES + _MAC_BYTES:
            raise AcmeProblem(ProblemType.BAD_NONCE, "nonce was not issued by this server")
        body, mac = raw[:-_MAC_BYTES], raw[-_MAC_BYTES:]
        if not hmac.compare_digest(mac, self._mac(body)):
            raise AcmeProblem(ProblemType.BAD_NONCE, "nonce was not issued by this server")
        (expiry,) = struct.unpack(">Q", body[:_EXPIRY_BYTES])
        if expiry < time.time():
            raise AcmeProblem(
                ProblemType.BAD_NONCE, "nonce has expired; use the fresh Replay-Nonce"
            )
        token = body[_EXPIRY_BYTES:]
        if not await self._ledger.spend(token, datetime.fromtimestamp(expiry, UTC)):
            raise AcmeProblem(
                ProblemType.BAD_NONCE,
                "nonce has already been used, or is too old; use the fresh Replay-Nonce",
            )

    async def purge_expired(self) -> int:
        return await self._ledger.purge_expired()

    def _mac(self, body: bytes) -> bytes:
        return hmac.new(self._key, body, hashlib.sha256).digest()[:_MAC_BYTES]
