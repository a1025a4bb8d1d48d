"""The stored CRL on real SQLite and PostgreSQL stores: rebuilt after a revocation and
before nextUpdate, numbers strictly increasing even when processes rebuild at once."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from acme_server.ca import CertificateAuthority
from acme_server.revocation.crl_publisher import CrlPublisher
from acme_server.store import accounts, certificates
from acme_server.store.database import Database
from acme_server.store.ids import new_id
from acme_server.store.schema import crls


@pytest.fixture(params=["sqlite", "postgres"])
async def db(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Database]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'store.sqlite3'}"
    else:
        url = request.getfixturevalue("postgres_url")
    database = await Database.open(url)
    try:
        yield database
    finally:
        await database.close()


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> CertificateAuthority:
    return CertificateAuthority.load_or_create(tmp_path_factory.mktemp("ca"))


async def _issue(db: Database, ca: CertificateAuthority) -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    issued = ca.issue_for_key(key.public_key(), ["a.example"], validity=timedelta(days=1))
    cert_id = new_id()

    def _unit(conn: sa.Connection) -> Any:
        account = accounts.create(
            conn, thumbprint=new_id(), jwk={"kty": "EC"}, contact=[], tos_agreed=True,
            registration_id=None, eab_kid=None, eab_binding=None,
        )  # fmt: skip
        certificates.insert(
            conn, id=cert_id, serial=issued.serial_hex, order_id=None, account_id=account.id,
            registration_id=None, names=issued.names, chain_pem=issued.chain_pem,
            spki_sha256=issued.spki_sha256, not_before=issued.not_before,
            not_after=issued.not_after,
        )  # fmt: skip

    await db.write(_unit)
    return issued.serial_hex


def _serials(der: bytes | None) -> set[str]:
    assert der is not None
    return {format(e.serial_number, "x") for e in x509.load_der_x509_crl(der)}


async def test_rebuilt_after_revocation_and_before_next_update(
    db: Database, ca: CertificateAuthority
) -> None:
    publisher = CrlPublisher(db, ca, timedelta(hours=24))
    first = await publisher.current()
    assert first.number == 1 and _serials(first.der) == set()
    assert (await publisher.current()).der == first.der  # fresh: served as stored

    serial = await _issue(db, ca)

    def _unit(conn: sa.Connection) -> Any:
        stored = certificates.by_serial(conn, serial)
        assert stored is not None
        assert certificates.revoke(conn, stored.id, 1)

    await db.write(_unit)
    second = await publisher.current()
    assert second.number == 2 and _serials(second.der) == {serial}

    # Less than half the validity left: the next read rebuilds it.
    def _due_soon(conn: sa.Connection) -> Any:
        soon = datetime.now(UTC) + timedelta(hours=11)
        conn.execute(crls.update().values(next_update=soon))

    await db.write(_due_soon)
    third = await publisher.current()
    assert third.number == 3 and third.next_update is not None
    assert third.next_update > datetime.now(UTC) + timedelta(hours=23)


async def test_concurrent_rebuilds_never_share_a_number(
    db: Database, ca: CertificateAuthority
) -> None:
    publishers = [CrlPublisher(db, ca, timedelta(hours=24)) for _ in range(4)]
    built = await asyncio.gather(*(p.rebuild(force=True) for p in publishers))
    numbers = sorted(c.number for c in built)
    assert numbers == [1, 2, 3, 4]
    latest = await publishers[0].current()
    assert latest.number == 4
