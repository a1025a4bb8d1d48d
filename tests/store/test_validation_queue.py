"""The validation queue's SQL on real SQLite and PostgreSQL: due, lease, release, finish."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from acme_server.store import accounts, orders
from acme_server.store import validation_queue as queue
from acme_server.store.database import Database
from acme_server.store.schema import challenges

LEASE = timedelta(seconds=30)


async def _processing_challenge(db: Database, account_id: str, name: str) -> str:
    """An accepted (processing, due now) http-01 challenge for `name`."""

    def _unit(conn: sa.Connection) -> Any:
        order = orders.create_order(
            conn,
            account_id=account_id,
            names=[name],
            order_expires=datetime.now(UTC) + timedelta(hours=1),
        )
        challenge_id = (
            conn.execute(
                sa.select(challenges.c.id).where(
                    challenges.c.authz_id == order.authz_ids[0], challenges.c.type == "http-01"
                )
            )
        ).scalar_one()
        assert orders.start_challenge(conn, challenge_id)
        return challenge_id

    challenge_id = await db.write(_unit)
    return challenge_id


async def _account(db: Database, thumbprint: str) -> str:
    def _unit(conn: sa.Connection) -> Any:
        account = accounts.create(
            conn,
            thumbprint=thumbprint,
            jwk={"kty": "EC"},
            contact=[],
            tos_agreed=True,
            registration_id=None,
            eab_kid=None,
            eab_binding=None,
        )
        return account

    account = await db.write(_unit)
    return account.id


async def _run(url: str) -> None:
    db = await Database.open(url)
    other = await Database.open(url)  # a second server process on the same store
    try:
        alice, bob = await _account(db, "tp-alice"), await _account(db, "tp-bob")
        a1 = await _processing_challenge(db, alice, "a1.test")
        a2 = await _processing_challenge(db, alice, "a2.test")
        b1 = await _processing_challenge(db, bob, "b1.test")
        now = datetime.now(UTC) + timedelta(seconds=1)

        def _unit(conn: sa.Connection) -> Any:
            due = queue.due(conn, now=now, limit=10)
            assert [d.id for d in due] == [a1, a2, b1]
            assert {d.account_id for d in due} == {alice, bob}
            assert all(d.registration_id is None for d in due)
            skipped = queue.due(conn, now=now, limit=10, skip_accounts=[alice])
            assert [d.id for d in skipped] == [b1]
            assert [d.id for d in queue.due(conn, now=now, limit=1)] == [a1]
            assert queue.lease(conn, a1, now=now, until=now + LEASE)

        await db.write(_unit)

        # Another process sees the lease: it neither lists nor leases a1.
        def _unit(conn: sa.Connection) -> Any:
            assert a1 not in [d.id for d in queue.due(conn, now=now, limit=10)]
            assert not queue.lease(conn, a1, now=now, until=now + LEASE)
            # ... until the lease has run out (the holder died).
            later = now + LEASE + timedelta(seconds=1)
            assert a1 in [d.id for d in queue.due(conn, now=later, limit=10)]

        await other.write(_unit)

        job = await queue.load_job(db, a1)
        assert job is not None
        assert (job.type, job.name, job.key_thumbprint, job.attempts) == (
            "http-01",
            "a1.test",
            "tp-alice",
            0,
        )

        await queue.release(db, [a1])

        def _unit(conn: sa.Connection) -> Any:
            assert queue.lease(conn, a1, now=now, until=now + LEASE)

        await other.write(_unit)

        await queue.retry(db, a2, error={"type": "x"}, delay=timedelta(minutes=5))
        retried = await queue.load_job(db, a2)
        assert retried is not None and retried.attempts == 1

        def _unit(conn: sa.Connection) -> Any:
            assert a2 not in [d.id for d in queue.due(conn, now=now, limit=10)]

        await db.write(_unit)

        await queue.finish(db, b1, valid=True, error=None, authz_lifetime=timedelta(days=1))
        assert await queue.load_job(db, b1) is None  # no longer processing

        def _unit(conn: sa.Connection) -> Any:
            assert not queue.lease(conn, b1, now=now, until=now + LEASE)

        await db.write(_unit)
    finally:
        await other.close()
        await db.close()


def test_validation_queue_sqlite(tmp_path: Path) -> None:
    asyncio.run(_run(f"sqlite:///{tmp_path / 'store.sqlite3'}"))


@pytest.mark.usefixtures("postgres_server")
def test_validation_queue_postgres(postgres_url: str) -> None:
    asyncio.run(_run(postgres_url))
