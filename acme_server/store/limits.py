"""Per-account caps on unfinished work: pending orders and pending authorizations.

The first rate limits (issue 8 item 17): one account must not be able to fill the store
with orders and authorizations it never completes. Counted inside the newOrder transaction,
with the account row locked on PostgreSQL so concurrent requests cannot both squeeze in.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa

from acme_server.domain.identifiers import Identifier
from acme_server.domain.lifecycle import UNFINISHED_ORDER
from acme_server.domain.statuses import AuthorizationStatus
from acme_server.store.schema import accounts, authorizations, orders


@dataclass(frozen=True)
class PendingLimits:
    orders: int
    authorizations: int


class PendingLimitExceeded(Exception):
    """A new order would exceed one of the account's caps; the message names which."""

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


def check_new_order(
    conn: sa.Connection,
    account_id: str,
    names: list[str],
    limits: PendingLimits,
    now: datetime,
) -> None:
    """Raise PendingLimitExceeded when `names` as a new order would break a cap.

    Names the account already holds a valid authorization for are reused by the order and
    do not count.
    """
    if conn.dialect.name == "postgresql":
        conn.execute(sa.select(accounts.c.id).where(accounts.c.id == account_id).with_for_update())
    count, first_expiry = _pending(
        conn, orders, orders.c.status.in_(UNFINISHED_ORDER), account_id, now
    )
    if count + 1 > limits.orders:
        raise PendingLimitExceeded(
            f"too many pending orders: this account has {count} unfinished order(s), "
            f"the limit is {limits.orders}; finalize or let some expire",
            _seconds_until(first_expiry, now),
        )
    new = len(names) - _reusable(conn, account_id, names, now)
    if not new:
        return
    count, first_expiry = _pending(
        conn,
        authorizations,
        authorizations.c.status == AuthorizationStatus.PENDING,
        account_id,
        now,
    )
    if count + new > limits.authorizations:
        raise PendingLimitExceeded(
            f"too many pending authorizations: this account has {count} and the order needs "
            f"{new} more, the limit is {limits.authorizations}; complete, deactivate or let "
            "some expire",
            _seconds_until(first_expiry, now),
        )


def _pending(
    conn: sa.Connection,
    table: sa.Table,
    status: sa.ColumnElement[bool],
    account_id: str,
    now: datetime,
) -> tuple[int, datetime | None]:
    row = (
        conn.execute(
            sa.select(sa.func.count(), sa.func.min(table.c.expires_at)).where(
                table.c.account_id == account_id, status, table.c.expires_at > now
            )
        )
    ).one()
    return int(row[0]), row[1]


def _reusable(conn: sa.Connection, account_id: str, names: list[str], now: datetime) -> int:
    """How many of `names` a still-valid authorization of the account (of the same
    identifier type: an ip authorization never covers a dns name) covers."""
    wanted = {
        (str(Identifier.of(n).type), n[2:], True)
        if n.startswith("*.")
        else (str(Identifier.of(n).type), n, False)
        for n in names
    }
    rows = conn.execute(
        sa.select(
            authorizations.c.identifier_type,
            authorizations.c.identifier_value,
            authorizations.c.wildcard,
        )
        .where(
            authorizations.c.account_id == account_id,
            authorizations.c.identifier_value.in_({value for _, value, _ in wanted}),
            authorizations.c.status == AuthorizationStatus.VALID,
            authorizations.c.expires_at > now,
        )
        .distinct()
    )
    held = {(r.identifier_type, r.identifier_value, bool(r.wildcard)) for r in rows}
    return len(wanted & held)


def _seconds_until(when: datetime | None, now: datetime) -> int:
    """Retry-After: when the first pending item expires (and so frees a slot), at least 1 s."""
    if when is None:
        return 1
    return max(1, math.ceil((when - now).total_seconds()))
