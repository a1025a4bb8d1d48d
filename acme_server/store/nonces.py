"""The spent-nonce table and the nonce MAC key: what the nonce service needs persisted.

The protocol side (MAC, strict decoding, `badNonce`) lives in `acme_server.nonces`; this
module only knows the SQL. A nonce is recorded under its token, and the table's primary
key refuses a second insert in any process sharing the store (`--nonce-scope store`).
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from acme_server.encoding import b64url_encode
from acme_server.nonces import TOKEN_BYTES
from acme_server.store import meta
from acme_server.store.database import Database
from acme_server.store.schema import meta as meta_table
from acme_server.store.schema import nonces

NONCE_KEY = "nonce_hmac_key"
_SPEND = nonces.insert().values(value=sa.bindparam("value"), expires_at=sa.bindparam("expires_at"))


async def load_or_create_key(db: Database) -> bytes:
    """The store-wide nonce MAC key, created once by whichever process starts first."""
    existing = await meta.get(db, NONCE_KEY)
    if existing is None:
        try:
            query = sa.insert(meta_table).values(key=NONCE_KEY, value=secrets.token_hex(32))
            await db.write(lambda conn: conn.execute(query))
        except IntegrityError:
            pass  # another process won the race; use its key
        existing = await meta.get(db, NONCE_KEY)
    assert existing is not None
    return bytes.fromhex(existing)


class SpentNonces:
    """The `nonces` table as a nonce ledger: random tokens, insert-if-absent to spend,
    delete once expired."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def new_token(self) -> bytes:
        return secrets.token_bytes(TOKEN_BYTES)

    async def spend(self, token: bytes, expires_at: datetime) -> bool:
        """Record `token` as spent; False when it already was (in any process)."""
        params = {"value": b64url_encode(token), "expires_at": expires_at}
        try:
            await self._db.write(lambda conn: conn.execute(_SPEND, params))
        except IntegrityError:
            return False
        return True

    async def purge_expired(self) -> int:
        """Drop rows past their expiry (the MAC check refuses those nonces by itself)."""
        query = nonces.delete().where(nonces.c.expires_at < datetime.now(UTC))
        return await self._db.write(lambda conn: int(conn.execute(query).rowcount or 0))
