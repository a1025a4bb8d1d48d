"""Replay nonces that cost no write to hand out and one write to spend.

A nonce is `expiry || random || MAC(expiry || random)` under a key every process loads once
from the store, so any process can issue and check nonces. Spending one inserts it into the
`nonces` table (primary key): a second spend, in any process, hits the key and is refused.
Spent rows are only needed until their expiry, after which the MAC check alone refuses them.
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

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from acme_server.domain.problems import AcmeProblem
from acme_server.encoding import b64url_decode, b64url_encode
from acme_server.store import meta
from acme_server.store.database import Database
from acme_server.store.schema import meta as meta_table
from acme_server.store.schema import nonces

NONCE_KEY = "nonce_hmac_key"
_MAC_BYTES = 16


async def load_or_create_key(db: Database) -> bytes:
    """The store-wide nonce MAC key, created once by whichever process starts first."""
    existing = await meta.get(db, NONCE_KEY)
    if existing is None:
        try:
            async with db.transaction() as conn:
                await conn.execute(
                    sa.insert(meta_table).values(key=NONCE_KEY, value=secrets.token_hex(32))
                )
        except IntegrityError:
            pass  # another process won the race; use its key
        existing = await meta.get(db, NONCE_KEY)
    assert existing is not None
    return bytes.fromhex(existing)


class NonceService:
    def __init__(self, db: Database, key: bytes, lifetime_seconds: int) -> None:
        self._db = db
        self._key = key
        self._lifetime = lifetime_seconds

    def issue(self) -> str:
        body = struct.pack(">Q", int(time.time()) + self._lifetime) + secrets.token_bytes(16)
        mac = hmac.new(self._key, body, hashlib.sha256).digest()[:_MAC_BYTES]
        return b64url_encode(body + mac)

    async def consume(self, nonce: object) -> None:
        """Spend a nonce exactly once, or raise badNonce."""
        if not isinstance(nonce, str) or not nonce:
            raise AcmeProblem("badNonce", "JWS has no anti-replay nonce")
        try:
            raw = b64url_decode(nonce)
        except ValueError:
            raise AcmeProblem("badNonce", "nonce is not canonical unpadded base64url") from None
        if len(raw) != 8 + 16 + _MAC_BYTES:
            raise AcmeProblem("badNonce", "nonce was not issued by this server")
        body, mac = raw[:-_MAC_BYTES], raw[-_MAC_BYTES:]
        expected = hmac.new(self._key, body, hashlib.sha256).digest()[:_MAC_BYTES]
        if not hmac.compare_digest(mac, expected):
            raise AcmeProblem("badNonce", "nonce was not issued by this server")
        (expiry,) = struct.unpack(">Q", body[:8])
        if expiry < time.time():
            raise AcmeProblem("badNonce", "nonce has expired; use the fresh Replay-Nonce")
        try:
            async with self._db.transaction() as conn:
                await conn.execute(
                    nonces.insert().values(
                        value=b64url_encode(raw), expires_at=datetime.fromtimestamp(expiry, UTC)
                    )
                )
        except IntegrityError:
            raise AcmeProblem("badNonce", "nonce has already been used") from None

    async def purge_expired(self) -> int:
        async with self._db.transaction() as conn:
            result = await conn.execute(
                nonces.delete().where(nonces.c.expires_at < datetime.now(UTC))
            )
            return int(result.rowcount or 0)
