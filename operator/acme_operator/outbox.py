"""Which outbox rows this operator exports: certificates of registrations it manages.

`acme_server.store.exports.pending` returns every pending certificate, including those of
registrations made with the admin CLI (names without "/") or in namespaces this operator
does not watch. Those are never exported here, so selecting them would let them fill every
batch and starve the rest; this query keeps to "<namespace>/<name>" registrations it owns.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa

from acme_server.store.database import Database
from acme_server.store.exports import CertificateExport
from acme_server.store.schema import certificates, registrations


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


async def pending(
    db: Database, namespaces: Sequence[str] = (), *, limit: int = 100
) -> list[CertificateExport]:
    """Pending certificates of "<ns>/<name>" registrations (any ns when `namespaces` is empty)."""
    name = registrations.c.name
    if namespaces:
        scope = sa.or_(*(name.like(_escape_like(ns) + "/%", escape="\\") for ns in namespaces))
    else:
        scope = name.like("%/%")
    async with db.transaction() as conn:
        rows = await conn.execute(
            sa.select(certificates, name.label("registration_name"))
            .join(registrations, registrations.c.id == certificates.c.registration_id)
            .where(certificates.c.exported_revision < certificates.c.revision, scope)
            .order_by(certificates.c.created_at)
            .limit(limit)
        )
        return [
            CertificateExport(
                id=r.id,
                serial=r.serial,
                registration_name=r.registration_name,
                account_id=r.account_id,
                names=list(r.names),
                chain_pem=r.chain_pem,
                not_before=r.not_before,
                not_after=r.not_after,
                revoked_at=r.revoked_at,
                revocation_reason=r.revocation_reason,
                revision=r.revision,
            )
            for r in rows
        ]
