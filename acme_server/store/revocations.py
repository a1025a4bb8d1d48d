"""Revoking a stored certificate: the rules every revocation obeys, ACME's or the operator's.

Both `revokeCert` (web/handlers/certificates.py) and the operator's revoke annotation
(operator_facade.revoke_certificate) end in `revoke`, so both refuse the same things the
same way and both mark the CRL stale through `certificates.revoke`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

import sqlalchemy as sa

from acme_server.domain.revocation import ALLOWED_REASONS
from acme_server.store import certificates as cert_store
from acme_server.store.certificates import StoredCertificate
from acme_server.store.schema import certificates, registrations


class Refusal(StrEnum):
    UNKNOWN = "unknown"
    ALREADY_REVOKED = "alreadyRevoked"
    EXPIRED = "expired"
    BAD_REASON = "badReason"


class RevocationRefused(Exception):
    def __init__(self, refusal: Refusal, detail: str) -> None:
        super().__init__(detail)
        self.refusal = refusal
        self.detail = detail


def check_revocable(stored: StoredCertificate, now: datetime) -> None:
    """RevocationRefused unless `stored` is unrevoked and unexpired."""
    if stored.revoked_at is not None:
        raise RevocationRefused(
            Refusal.ALREADY_REVOKED, f"certificate {stored.serial} is already revoked"
        )
    if stored.not_after <= now:
        raise RevocationRefused(
            Refusal.EXPIRED, f"certificate {stored.serial} expired; it cannot be revoked"
        )


def revoke(conn: sa.Connection, stored: StoredCertificate, reason: int, now: datetime) -> None:
    """Revoke after the checks every caller shares (the caller checked who may)."""
    if reason not in ALLOWED_REASONS:
        raise RevocationRefused(Refusal.BAD_REASON, f"revocation reason {reason!r} is not allowed")
    check_revocable(stored, now)
    if not cert_store.revoke(conn, stored.id, reason):
        raise RevocationRefused(
            Refusal.ALREADY_REVOKED, f"certificate {stored.serial} is already revoked"
        )


@dataclass(frozen=True)
class Revoked:
    """What the operator reports: the certificate as it is after the call."""

    serial: str
    names: list[str]
    revoked_at: datetime | None
    revocation_reason: int | None
    not_after: datetime


def revoke_for_registration(
    conn: sa.Connection, registration_name: str, serial: str, reason: int, now: datetime
) -> Revoked:
    """Revoke certificate `serial` of registration `registration_name` (the operator's
    door: whoever may write that registration's Secrets may revoke its certificates).

    RevocationRefused(UNKNOWN) when no such certificate belongs to that registration.
    """
    row = conn.execute(
        sa.select(certificates.c.id)
        .join(registrations, registrations.c.id == certificates.c.registration_id)
        .where(certificates.c.serial == serial.lower(), registrations.c.name == registration_name)
    ).first()
    stored = cert_store.by_id(conn, row.id) if row is not None else None
    if stored is None:
        raise RevocationRefused(
            Refusal.UNKNOWN,
            f"no certificate {serial} of registration {registration_name} in the store",
        )
    revoke(conn, stored, reason, now)
    return Revoked(stored.serial, stored.names, now, reason, stored.not_after)


def describe(conn: sa.Connection, serial: str) -> Revoked | None:
    """The certificate's current revocation state (for messages about a refusal)."""
    stored = cert_store.by_serial(conn, serial.lower())
    if stored is None:
        return None
    return Revoked(
        stored.serial, stored.names, stored.revoked_at, stored.revocation_reason, stored.not_after
    )
