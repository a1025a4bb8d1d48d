"""Keeps the issuing CA's CRL in the store current: rebuilt after every revocation (the
revoking transaction marks it stale) and before its nextUpdate; served from the store so
every process hands out the same bytes."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from acme_server.ca import CertificateAuthority
from acme_server.store import crls
from acme_server.store.availability import log_failure
from acme_server.store.database import Database

log = logging.getLogger("acme_server.revocation")

POLL_SECONDS = 5.0


class CrlPublisher:
    def __init__(self, db: Database, ca: CertificateAuthority, validity: timedelta) -> None:
        self.db = db
        self.ca = ca
        self.validity = validity
        self.key_id = ca.issuer_key_id.hex()

    def _due(self, crl: crls.StoredCRL | None, now: datetime) -> bool:
        """Rebuild when stale, never built, or less than half its validity is left."""
        if crl is None or crl.stale or crl.der is None or crl.next_update is None:
            return True
        return crl.next_update - now < self.validity / 2

    async def current(self) -> crls.StoredCRL:
        """The CRL to serve, rebuilt first if a revocation or the clock made it due."""
        stored = await self.db.read(lambda conn: crls.current(conn, self.key_id))
        if self._due(stored, datetime.now(UTC)):
            return await self.rebuild()
        assert stored is not None
        return stored

    async def rebuild(self, *, force: bool = False) -> crls.StoredCRL:
        """Build and store the next CRL under the row lock; another process that just did it
        wins (its CRL is served as is, unless `force`)."""

        def unit(conn: sa.Connection) -> tuple[crls.StoredCRL, int | None]:
            locked = crls.lock(conn, self.key_id)
            now = datetime.now(UTC).replace(microsecond=0)
            if not force and not self._due(locked, now):
                return locked, None
            entries = [
                (e.serial, e.revoked_at, e.reason) for e in crls.revoked_unexpired(conn, now)
            ]
            number = locked.number + 1
            next_update = now + self.validity
            # Signed inside the unit (off the event loop), under the row lock.
            der = self.ca.sign_crl(entries, number=number, this_update=now, next_update=next_update)
            crls.store(
                conn, self.key_id, number=number, this_update=now, next_update=next_update, der=der
            )
            return crls.StoredCRL(self.key_id, number, now, next_update, der, False), len(entries)

        stored, published = await self.db.write(unit)
        if published is not None:
            log.info("published CRL number %d with %d entries", stored.number, published)
        return stored

    async def run_periodically(self) -> None:
        """Rebuild when due, also after revocations made by other processes or the operator."""
        while True:
            try:
                await self.current()
            except Exception as exc:
                log_failure(log, "refreshing the CRL failed", exc)
            await asyncio.sleep(POLL_SECONDS)
