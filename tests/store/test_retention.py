"""Retention purge on real SQLite and PostgreSQL stores: exactly the forgettable rows go."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from acme_server.store import accounts, certificates, orders, retention
from acme_server.store.database import Database
from acme_server.store.schema import authorizations, challenges, order_authorizations
from acme_server.store.schema import certificates as certificate_rows
from acme_server.store.schema import orders as order_rows

DAY = timedelta(days=1)
RETENTION = 30 * DAY


async def _order(
    db: Database, account_id: str, name: str, *, status: str, authz_status: str, **times: Any
) -> tuple[str, str]:
    """One order with one authorization, then aged/set as given: (order id, authz id)."""
    now = datetime.now(UTC)

    def _unit(conn: sa.Connection) -> Any:
        order = orders.create_order(
            conn, account_id=account_id, names=[name], order_expires=now + timedelta(hours=1)
        )
        authz_id = order.authz_ids[0]
        conn.execute(
            order_rows.update()
            .where(order_rows.c.id == order.id)
            .values(
                status=status,
                created_at=times.get("created", now),
                expires_at=times.get("expires", now + timedelta(hours=1)),
            )
        )
        conn.execute(
            authorizations.update()
            .where(authorizations.c.id == authz_id)
            .values(
                status=authz_status,
                created_at=times.get("created", now),
                expires_at=times.get("authz_expires", times.get("expires", now + DAY)),
            )
        )
        return authz_id, order

    authz_id, order = await db.write(_unit)
    return order.id, authz_id


async def _scenario(db: Database) -> dict[str, tuple[str, str]]:
    now = datetime.now(UTC)

    def _unit(conn: sa.Connection) -> Any:
        account = accounts.create(
            conn,
            thumbprint="tp-" + str(id(db)),
            jwk={"kty": "EC"},
            contact=[],
            tos_agreed=True,
            registration_id=None,
            eab_kid=None,
            eab_binding=None,
        )
        return account

    account = await db.write(_unit)
    a = account.id
    made = {
        # forgettable: older than the retention period
        "invalid_old": await _order(
            db, a, "i-old.test", status="invalid", authz_status="invalid",
            created=now - 40 * DAY, expires=now - 10 * DAY,
        ),
        "pending_expired_old": await _order(
            db, a, "p-old.test", status="pending", authz_status="pending",
            created=now - 36 * DAY, expires=now - 35 * DAY,
        ),
        # the order goes (valid, expired long ago) but its authorization is still valid
        "valid_old": await _order(
            db, a, "v-old.test", status="valid", authz_status="valid",
            created=now - 32 * DAY, expires=now - 31 * DAY, authz_expires=now + 5 * DAY,
        ),
        # kept: within the retention period, or still live
        "invalid_recent": await _order(
            db, a, "i-new.test", status="invalid", authz_status="invalid",
            created=now - 10 * DAY, expires=now - 9 * DAY,
        ),
        "valid_expired_recent": await _order(
            db, a, "v-new.test", status="valid", authz_status="valid",
            created=now - 6 * DAY, expires=now - 5 * DAY, authz_expires=now + 20 * DAY,
        ),
        "pending_live": await _order(db, a, "p-new.test", status="pending", authz_status="pending"),
    }  # fmt: skip

    def _certificates(conn: sa.Connection) -> Any:
        for key in ("valid_old", "valid_expired_recent"):
            certificates.insert(
                conn,
                id="cert-" + key,
                serial=made[key][0][:16],
                order_id=made[key][0],
                account_id=a,
                registration_id=None,
                names=["x.test"],
                chain_pem="-",
                spki_sha256="0" * 64,
                not_before=now - 31 * DAY,
                not_after=now + 59 * DAY,
            )

    await db.write(_certificates)
    return made


async def _rows(db: Database) -> dict[str, Any]:
    def _unit(conn: sa.Connection) -> Any:
        def col(column: sa.ColumnElement[Any]) -> set[Any]:
            return set((conn.execute(sa.select(column))).scalars())

        return {
            "orders": col(order_rows.c.id),
            "authzs": col(authorizations.c.id),
            "challenge_authzs": col(challenges.c.authz_id),
            "links": set((conn.execute(sa.select(order_authorizations.c.order_id))).scalars()),
            "certs": {
                r.id: r.order_id
                for r in conn.execute(sa.select(certificate_rows.c.id, certificate_rows.c.order_id))
            },
        }

    return await db.write(_unit)


async def _run(url: str) -> None:
    db = await Database.open(url)
    other = await Database.open(url)  # a second server process on the same store
    try:
        made = await _scenario(db)
        # Two purges at once, in batches of 1: they split or repeat work, never fail.
        results = await asyncio.gather(
            retention.purge(db, older_than=RETENTION, batch=1),
            retention.purge(other, older_than=RETENTION, batch=1),
        )
        assert sum(r.orders for r in results) == 3
        assert sum(r.authorizations for r in results) == 2
        rows = await _rows(db)
        kept = ("invalid_recent", "valid_expired_recent", "pending_live")
        assert rows["orders"] == {made[k][0] for k in kept}
        assert rows["links"] == {made[k][0] for k in kept}
        live_authzs = {made[k][1] for k in kept} | {made["valid_old"][1]}
        assert rows["authzs"] == live_authzs
        assert rows["challenge_authzs"] == live_authzs
        assert rows["certs"] == {
            "cert-valid_old": None,  # the certificate outlives its purged order
            "cert-valid_expired_recent": made["valid_expired_recent"][0],
        }
        again = await retention.purge(db, older_than=RETENTION)
        assert (again.orders, again.authorizations) == (0, 0)
        # Once the valid authorization is past retention too, it goes (no order refers to it).
        later = await retention.purge(db, older_than=RETENTION, now=datetime.now(UTC) + 40 * DAY)
        assert later.authorizations >= 1
        assert made["valid_old"][1] not in (await _rows(db))["authzs"]
    finally:
        await other.close()
        await db.close()


def test_purge_sqlite(tmp_path: Path) -> None:
    asyncio.run(_run(f"sqlite:///{tmp_path / 'store.sqlite3'}"))


@pytest.mark.usefixtures("postgres_server")
def test_purge_postgres(postgres_url: str) -> None:
    asyncio.run(_run(postgres_url))
