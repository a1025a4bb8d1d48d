"""The operator's one door into the store: the few things it reads and writes, nothing else.

The operator is a separate process (often a separate version) from the ACME server, so it
never migrates: `OperatorStore.open` checks the schema revision and refuses any other than
this code's head (see database.py). Everything it needs travels through this class and the
types re-exported here, so the operator imports no other store module and no SQL.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import sqlalchemy as sa

from acme_server.domain.identifiers import DomainRule
from acme_server.store import exports, meta, registrations, revocations
from acme_server.store.availability import log_failure
from acme_server.store.database import Database, SchemaMismatch, default_database_url
from acme_server.store.exports import CertificateExport
from acme_server.store.registrations import (
    HMAC_KEY_BYTES,
    BoundAccount,
    Registration,
    RegistrationError,
    RegistrationUsage,
    RowSpec,
    generate_hmac_key,
)
from acme_server.store.revocations import Refusal, Revoked

__all__ = [
    "HMAC_KEY_BYTES",
    "BoundAccount",
    "CertificateExport",
    "OperatorStore",
    "Refusal",
    "Registration",
    "RegistrationError",
    "RegistrationUsage",
    "RevocationOutcome",
    "Revoked",
    "RowSpec",
    "SchemaMismatch",
    "Usage",
    "default_database_url",
    "generate_hmac_key",
    "log_failure",
]


@dataclass(frozen=True)
class Usage:
    """What an AcmeRegistration's status shows about its use."""

    accounts: list[BoundAccount]
    certificates_issued: int
    last_issuance: datetime | None


@dataclass(frozen=True)
class RevocationOutcome:
    """A revoke annotation's result: `refusal` None when this call revoked it; `current` is
    the certificate's state afterwards (None when the store has no such certificate)."""

    refusal: Refusal | None
    detail: str
    current: Revoked | None


class OperatorStore:
    """Registrations in, usage and the certificate outbox out; one transaction per call."""

    def __init__(self, db: Database) -> None:
        self._db = db

    @classmethod
    async def open(cls, url: str) -> OperatorStore:
        """Open without migrating; SchemaMismatch unless the store is at this code's head."""
        db = await Database.open(url, migrate=False)
        try:
            await db.check_schema()
        except BaseException:
            await db.close()
            raise
        return cls(db)

    async def close(self) -> None:
        await self._db.close()

    async def ping(self) -> None:
        """Raise unless the store answers a trivial query (the liveness probe)."""
        await self._db.read(lambda conn: conn.execute(sa.select(1)).scalar())

    # ------------------------------------------------------------ registrations

    async def registration(self, name: str) -> Registration | None:
        return await registrations.get(self._db, name)

    async def kid_holder(self, kid: str) -> str | None:
        """The name of the registration using key ID `kid`, if any."""
        reg = await self._db.read(lambda conn: registrations.load_by_kid(conn, kid))
        return None if reg is None else reg.name

    async def upsert_registration(
        self,
        name: str,
        *,
        kid: str,
        hmac_key: str,
        max_accounts: int | None,
        suspended: bool,
        domains: list[DomainRule],
        any_domain: bool,
        max_pending_orders: int | None,
        max_pending_authorizations: int | None,
        ip_ranges: tuple[str, ...] = (),
    ) -> Registration:
        """Create or update `name` with exactly this allow-list; RegistrationError if refused."""
        return await registrations.upsert(
            self._db,
            name,
            kid=kid,
            hmac_key=hmac_key,
            max_accounts=max_accounts,
            suspended=suspended,
            domains=domains,
            any_domain=any_domain,
            max_pending_orders=max_pending_orders,
            max_pending_authorizations=max_pending_authorizations,
            ip_ranges=ip_ranges,
        )

    async def delete_registration(self, name: str) -> bool:
        """True when a row was removed (its accounts stay, refused from now on)."""
        return await registrations.delete(self._db, name)

    # Batches: the operator coalesces concurrent reconciles into these (one transaction each).

    async def registrations(self, names: list[str]) -> dict[str, Registration]:
        return await registrations.get_many(self._db, names)

    async def kid_holders(self, kids: list[str]) -> dict[str, str]:
        """key ID -> holder name, for the key IDs in use."""
        return await registrations.kid_holders(self._db, kids)

    async def upsert_registrations(
        self, specs: list[RowSpec]
    ) -> list[Registration | RegistrationError]:
        """Per spec the stored registration or the error refusing it; one transaction."""
        return await registrations.upsert_many(self._db, specs)

    async def usage_many(self, names: list[str]) -> dict[str, RegistrationUsage]:
        return await registrations.usage_many(self._db, names)

    async def usage(self, name: str) -> Usage:
        accounts = await registrations.bound_accounts(self._db, name)
        issued, last = await registrations.certificate_count(self._db, name)
        return Usage(accounts, issued, last)

    # ------------------------------------------------------------ certificate outbox

    async def pending_exports(
        self, namespaces: Sequence[str], *, limit: int
    ) -> list[CertificateExport]:
        return await exports.pending(self._db, namespaces, limit=limit)

    async def oldest_pending_export(self, namespaces: Sequence[str]) -> datetime | None:
        """When the oldest change waiting for export happened (None: nothing waits)."""
        return await exports.oldest_pending_at(self._db, namespaces)

    async def mark_exported(self, certificate_id: str, revision: int) -> bool:
        """Compare-and-set: False when this revision (or a newer one) was marked already."""
        return await exports.mark_exported(self._db, certificate_id, revision)

    async def mark_exported_many(self, done: list[tuple[str, int]]) -> int:
        """`mark_exported` for (certificate id, revision) pairs, in one transaction."""
        return await exports.mark_exported_many(self._db, done)

    async def ca_root_pem(self) -> str | None:
        """The CA root the server recorded at start; None before the first server start."""
        return await meta.get(self._db, meta.CA_ROOT_PEM)

    # ------------------------------------------------------------ revocation

    async def revoke_certificate(
        self, registration_name: str, serial: str, reason: int
    ) -> RevocationOutcome:
        """Revoke `serial` of `registration_name` by the rules ACME revocation obeys (one
        transaction; the CRL is marked stale, the Secret re-exported with the new state)."""

        def unit(conn: sa.Connection) -> RevocationOutcome:
            now = datetime.now(UTC)
            try:
                done = revocations.revoke_for_registration(
                    conn, registration_name, serial, reason, now
                )
            except revocations.RevocationRefused as exc:
                current = None
                if exc.refusal is not Refusal.UNKNOWN:
                    current = revocations.describe(conn, serial)
                return RevocationOutcome(exc.refusal, exc.detail, current)
            return RevocationOutcome(None, "revoked", done)

        return await self._db.write(unit)
