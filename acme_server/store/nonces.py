"""The spent-nonce table and the nonce MAC key: what the nonce service needs persisted.

The protocol side (MAC, strict decoding, `badNonce`) lives in `acme_server.nonces`; this
module only knows the SQL. A nonce is recorded under the spelling the service hands it,
and the table's primary key refuses a second insert in any process sharing the store.
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from acme_server.store import meta
from acme_server.store.database import Database
from acme_server.store.schema import meta as meta_table
from acme_server.store.schema import nonces

NONCE_KEY = "nonce_hmac_key"


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


class SpentNonces:
    """The `nonces` table: insert-if-absent to spend, delete once expired."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def spend(self, value: str, expires_at: datetime) -> bool:
        """Record `value` as spent; False when it already was (in any process)."""
        try:
            async with self._db.transaction() as conn:
                await conn.execute(nonces.insert().values(value=value, expires_at=expires_at))
        except IntegrityError:
            return False
        return True

    async def purge_expired(self) -> int:
        """Drop rows past their expiry (the MAC check refuses those nonces by itself)."""
        async with self._db.transaction() as conn:
            result = await conn.execute(
                nonces.delete().where(nonces.c.expires_at < datetime.now(UTC))
            )
            return int(result.rowcount or 0)
