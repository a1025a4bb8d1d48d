"""Issued certificates and their revocation state."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from acme_server.store import crls
from acme_server.store.schema import certificates, orders


@dataclass(frozen=True)
class StoredCertificate:
    id: str
    serial: str
    order_id: str | None
    account_id: str
    registration_id: int | None
    names: list[str]
    chain_pem: str
    spki_sha256: str
    not_before: datetime
    not_after: datetime
    revoked_at: datetime | None
    revocation_reason: int | None
    replaced_by_order_id: str | None = None


def _cert(row: Any) -> StoredCertificate:
    return StoredCertificate(
        row.id,
        row.serial,
        row.order_id,
        row.account_id,
        row.registration_id,
        list(row.names),
        row.chain_pem,
        row.spki_sha256,
        row.not_before,
        row.not_after,
        row.revoked_at,
        row.revocation_reason,
        row.replaced_by_order_id,
    )


def by_id(conn: sa.Connection, cert_id: str) -> StoredCertificate | None:
    row = (conn.execute(sa.select(certificates).where(certificates.c.id == cert_id))).first()
    return _cert(row) if row else None


def by_serial(conn: sa.Connection, serial_hex: str) -> StoredCertificate | None:
    row = (conn.execute(sa.select(certificates).where(certificates.c.serial == serial_hex))).first()
    return _cert(row) if row else None


def insert(conn: sa.Connection, **values: Any) -> None:
    conn.execute(
        certificates.insert().values(
            created_at=datetime.now(UTC), revision=1, exported_revision=0, **values
        )
    )


def revoke(conn: sa.Connection, cert_id: str, reason: int) -> bool:
    """Mark revoked once; bump the revision so the operator re-exports the new state, and
    mark the CRLs stale so no process serves one without this revocation."""
    crls.mark_stale(conn)
    result = conn.execute(
        certificates.update()
        .where(certificates.c.id == cert_id, certificates.c.revoked_at.is_(None))
        .values(
            revoked_at=datetime.now(UTC),
            revocation_reason=reason,
            revision=certificates.c.revision + 1,
        )
    )
    return bool(result.rowcount)


def mark_replaced(conn: sa.Connection, cert_id: str, order_id: str, now: datetime) -> bool:
    """Record `order_id` as the replacement of `cert_id` (RFC 9773 `replaces`).

    False when another replacement order is still alive (pending, ready, processing) or
    succeeded; a replacement that failed or expired unfinished may be superseded.
    """
    live = (
        sa.select(orders.c.id)
        .where(
            orders.c.id == certificates.c.replaced_by_order_id,
            sa.or_(
                orders.c.status == "valid",
                sa.and_(orders.c.status != "invalid", orders.c.expires_at > now),
            ),
        )
        .exists()
    )
    result = conn.execute(
        certificates.update()
        .where(certificates.c.id == cert_id, sa.not_(live))
        .values(replaced_by_order_id=order_id)
    )
    return bool(result.rowcount)
