"""The certificate outbox the operator drains into Kubernetes Secrets.

A certificate row's `revision` grows with every change the cluster must see (issuance,
revocation); the operator exports it and records `exported_revision`. Marking is a
compare-and-set on the revision it exported, so a crash between writing the Secret and
marking only causes an idempotent re-export, never a lost or doubled one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa

from acme_server.store.database import Database
from acme_server.store.schema import certificates, registrations


@dataclass(frozen=True)
class CertificateExport:
    id: str
    serial: str
    registration_name: str
    account_id: str
    names: list[str]
    chain_pem: str
    not_before: datetime
    not_after: datetime
    revoked_at: datetime | None
    revocation_reason: int | None
    revision: int


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _scope(namespaces: Sequence[str]) -> sa.ColumnElement[bool]:
    """Kubernetes-managed registrations ("<namespace>/<name>"), of `namespaces` when given."""
    name = registrations.c.name
    if namespaces:
        return sa.or_(*(name.like(_escape_like(ns) + "/%", escape="\\") for ns in namespaces))
    return name.like("%/%")


async def pending(
    db: Database, namespaces: Sequence[str] = (), *, limit: int = 100
) -> list[CertificateExport]:
    """Unexported certificates of Kubernetes-managed ("<namespace>/<name>") registrations.

    Registrations made with the admin CLI have no namespace and are never exported, so they
    are left out here: otherwise they would fill every batch and starve the rest. With
    `namespaces`, only those namespaces' registrations are returned.
    """
    scope = _scope(namespaces)
    query = (
        sa.select(certificates, registrations.c.name.label("registration_name"))
        .join(registrations, registrations.c.id == certificates.c.registration_id)
        .where(certificates.c.exported_revision < certificates.c.revision, scope)
        .order_by(certificates.c.created_at)
        .limit(limit)
    )
    rows = await db.read(lambda conn: conn.execute(query).all())
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


async def oldest_pending_at(db: Database, namespaces: Sequence[str] = ()) -> datetime | None:
    """When the oldest change still waiting for export happened (its revocation, else its
    issuance); None when nothing waits. Same scope as `pending`."""
    scope = _scope(namespaces)
    since = sa.func.coalesce(certificates.c.revoked_at, certificates.c.created_at)
    query = (
        sa.select(certificates.c.revoked_at, certificates.c.created_at)
        .join(registrations, registrations.c.id == certificates.c.registration_id)
        .where(certificates.c.exported_revision < certificates.c.revision, scope)
        .order_by(since)
        .limit(1)
    )
    row = await db.read(lambda conn: conn.execute(query).first())
    if row is None:
        return None
    return row.revoked_at or row.created_at


async def mark_exported(db: Database, certificate_id: str, revision: int) -> bool:
    query = (
        certificates.update()
        .where(certificates.c.id == certificate_id, certificates.c.exported_revision < revision)
        .values(exported_revision=revision)
    )
    return await db.write(lambda conn: bool(conn.execute(query).rowcount))


_MARK_EXPORTED = (
    certificates.update()
    .where(
        certificates.c.id == sa.bindparam("b_id"),
        certificates.c.exported_revision < sa.bindparam("b_rev"),
    )
    .values(exported_revision=sa.bindparam("b_rev"))
)


async def mark_exported_many(db: Database, done: list[tuple[str, int]]) -> int:
    """`mark_exported` for a whole exported batch in one transaction; how many were marked."""
    if not done:
        return 0
    rows = [{"b_id": cid, "b_rev": rev} for cid, rev in done]
    return await db.write(lambda conn: int(conn.execute(_MARK_EXPORTED, rows).rowcount))
