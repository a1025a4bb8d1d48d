"""The stored CRL of each issuing CA: the one copy every server process serves.

A process rebuilds a CRL under the row's lock (`FOR UPDATE` on PostgreSQL, SQLite's single
writer), so two processes never issue two CRLs with one number, and the number only grows.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from acme_server.store.schema import certificates, crls


@dataclass(frozen=True)
class StoredCRL:
    issuer_key_id: str
    number: int
    this_update: datetime | None
    next_update: datetime | None
    der: bytes | None
    stale: bool


@dataclass(frozen=True)
class RevokedEntry:
    serial: int
    revoked_at: datetime
    reason: int | None


def _crl(row: Any) -> StoredCRL:
    return StoredCRL(
        row.issuer_key_id, row.number, row.this_update, row.next_update, row.der, row.stale
    )


def current(conn: sa.Connection, issuer_key_id: str) -> StoredCRL | None:
    row = (conn.execute(sa.select(crls).where(crls.c.issuer_key_id == issuer_key_id))).first()
    return _crl(row) if row else None


def lock(conn: sa.Connection, issuer_key_id: str) -> StoredCRL:
    """The row for `issuer_key_id`, created (number 0, stale) if missing, locked for update."""
    values = {"issuer_key_id": issuer_key_id, "number": 0, "stale": True}
    insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
    conn.execute(insert(crls).values(**values).on_conflict_do_nothing())
    query = sa.select(crls).where(crls.c.issuer_key_id == issuer_key_id).with_for_update()
    return _crl((conn.execute(query)).one())


def store(
    conn: sa.Connection,
    issuer_key_id: str,
    *,
    number: int,
    this_update: datetime,
    next_update: datetime,
    der: bytes,
) -> None:
    conn.execute(
        crls.update()
        .where(crls.c.issuer_key_id == issuer_key_id)
        .values(
            number=number, this_update=this_update, next_update=next_update, der=der, stale=False
        )
    )


def mark_stale(conn: sa.Connection) -> None:
    """Called in the revoking transaction: every CRL must be rebuilt before it is served."""
    conn.execute(crls.update().values(stale=True))


def revoked_unexpired(conn: sa.Connection, now: datetime) -> list[RevokedEntry]:
    """Revoked certificates still within their validity (RFC 5280 5.1.2.6: expired ones
    may leave the CRL), oldest revocation first."""
    c = certificates
    rows = conn.execute(
        sa.select(c.c.serial, c.c.revoked_at, c.c.revocation_reason)
        .where(c.c.revoked_at.is_not(None), c.c.not_after > now)
        .order_by(c.c.revoked_at, c.c.serial)
    )
    return [RevokedEntry(int(r.serial, 16), r.revoked_at, r.revocation_reason) for r in rows]
