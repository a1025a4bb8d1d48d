"""Retention: forget what RFC 8555 lets a server forget, so the store does not grow forever.

Deleted once older than the retention period: orders that are invalid, or past their
expiry (whatever their status, valid included), with their authorization links; then
authorizations no remaining order refers to that are invalid, deactivated, revoked or past
their expiry, with their challenges. Certificates, accounts and registrations are never
purged (a certificate keeps its row; its order_id becomes NULL).

Every process runs the purge. Work goes in small batches, each one short transaction;
on PostgreSQL the batch rows are taken with FOR UPDATE SKIP LOCKED, so concurrent purges
split the work instead of blocking or deadlocking on each other.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from acme_server.domain.lifecycle import FINAL_AUTHZ
from acme_server.domain.statuses import OrderStatus
from acme_server.store.availability import log_failure
from acme_server.store.database import Database
from acme_server.store.schema import (
    authorizations,
    certificates,
    challenges,
    order_authorizations,
    orders,
)

log = logging.getLogger(__name__)

BATCH = 500
INTERVAL_SECONDS = 300.0


@dataclass(frozen=True)
class Purged:
    orders: int
    authorizations: int


def _purgeable_orders(cutoff: datetime) -> sa.ColumnElement[bool]:
    return sa.or_(
        orders.c.expires_at < cutoff,
        sa.and_(orders.c.status == OrderStatus.INVALID, orders.c.created_at < cutoff),
    )


def _purgeable_authzs(cutoff: datetime) -> sa.ColumnElement[bool]:
    linked = sa.exists().where(order_authorizations.c.authz_id == authorizations.c.id)
    return sa.and_(
        sa.or_(
            authorizations.c.expires_at < cutoff,
            sa.and_(
                authorizations.c.status.in_(sorted(FINAL_AUTHZ)),
                authorizations.c.created_at < cutoff,
            ),
        ),
        ~linked,
    )


def _take(
    conn: sa.Connection,
    id_column: sa.ColumnElement[str],
    where: sa.ColumnElement[bool],
    batch: int,
) -> list[str]:
    """Up to `batch` purgeable ids, rows locked so that concurrent purgers skip them."""
    query = sa.select(id_column).where(where).limit(batch).with_for_update(skip_locked=True)
    return list((conn.execute(query)).scalars())


def _purge_order_batch(conn: sa.Connection, cutoff: datetime, batch: int) -> int:
    ids = _take(conn, orders.c.id, _purgeable_orders(cutoff), batch)
    if ids:
        conn.execute(
            certificates.update().where(certificates.c.order_id.in_(ids)).values(order_id=None)
        )
        conn.execute(order_authorizations.delete().where(order_authorizations.c.order_id.in_(ids)))
        conn.execute(orders.delete().where(orders.c.id.in_(ids)))
    return len(ids)


def _purge_authz_batch(conn: sa.Connection, cutoff: datetime, batch: int) -> int:
    ids = _take(conn, authorizations.c.id, _purgeable_authzs(cutoff), batch)
    if ids:
        conn.execute(challenges.delete().where(challenges.c.authz_id.in_(ids)))
        conn.execute(authorizations.delete().where(authorizations.c.id.in_(ids)))
    return len(ids)


async def purge(
    db: Database, *, older_than: timedelta, now: datetime | None = None, batch: int = BATCH
) -> Purged:
    """Delete what the retention period allows, batch by batch; returns how much went."""
    cutoff = (now or datetime.now(UTC)) - older_than
    total_orders = total_authzs = 0
    # One transaction per batch, so writers (requests) get the store in between.
    while n := await db.write(lambda conn: _purge_order_batch(conn, cutoff, batch)):
        total_orders += n
    while n := await db.write(lambda conn: _purge_authz_batch(conn, cutoff, batch)):
        total_authzs += n
    return Purged(total_orders, total_authzs)


async def run_periodically(
    db: Database, older_than: timedelta, interval: float = INTERVAL_SECONDS
) -> None:
    """The server's background task: purge now and every `interval` seconds."""
    while True:
        try:
            done = await purge(db, older_than=older_than)
            if done.orders or done.authorizations:
                log.info(
                    "retention purge removed %d order(s) and %d authorization(s)",
                    done.orders,
                    done.authorizations,
                )
        except Exception as exc:
            log_failure(log, "retention purge failed; retrying at the next interval", exc)
        await asyncio.sleep(interval)
