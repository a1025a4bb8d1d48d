"""The validation queue's SQL: due challenges, leases, and recording an attempt's outcome.

Accepted challenges wait in `challenges` as `processing` with `next_attempt_at`. A process
leases one with a conditional UPDATE (`lease_until`), so two processes never validate the
same attempt, and works the same on SQLite and PostgreSQL. Which challenges to take, and
when to retry, is the scheduler's policy (validation/scheduler.py); this module only asks
and writes. The outcome goes through the order state machine (`store.orders`).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from acme_server.domain.statuses import ChallengeStatus
from acme_server.store import orders as order_store
from acme_server.store.database import Database
from acme_server.store.schema import accounts, authorizations, challenges


@dataclass(frozen=True)
class DueChallenge:
    id: str
    account_id: str
    registration_id: int | None


@dataclass(frozen=True)
class ValidationJob:
    """What a validator needs for one attempt."""

    type: str
    token: str
    name: str
    key_thumbprint: str
    attempts: int
    account_id: str = ""  # for CAA accounturi (RFC 8657)
    # `name` is then the base name: tls-alpn-01 refuses it, CAA reads issuewild.
    wildcard: bool = False
    identifier_type: str = "dns"  # "ip": validate the address itself (RFC 8738)


def _unleased(now: datetime) -> sa.ColumnElement[bool]:
    return sa.or_(challenges.c.lease_until.is_(None), challenges.c.lease_until < now)


def due(
    conn: sa.Connection,
    *,
    now: datetime,
    limit: int,
    skip_accounts: Collection[str] = (),
    skip_registrations: Collection[int] = (),
) -> list[DueChallenge]:
    """Up to `limit` unleased challenges due by `now`, oldest first, without the challenges
    of the accounts and registrations to skip."""
    query = (
        sa.select(challenges.c.id, authorizations.c.account_id, accounts.c.registration_id)
        .join(authorizations, authorizations.c.id == challenges.c.authz_id)
        .join(accounts, accounts.c.id == authorizations.c.account_id)
        .where(
            challenges.c.status == ChallengeStatus.PROCESSING,
            challenges.c.next_attempt_at <= now,
            _unleased(now),
        )
        .order_by(challenges.c.next_attempt_at)
        .limit(limit)
    )
    if skip_accounts:
        query = query.where(authorizations.c.account_id.not_in(skip_accounts))
    if skip_registrations:
        query = query.where(
            sa.or_(
                accounts.c.registration_id.is_(None),
                accounts.c.registration_id.not_in(skip_registrations),
            )
        )
    rows = (conn.execute(query)).all()
    return [DueChallenge(r.id, r.account_id, r.registration_id) for r in rows]


def lease(conn: sa.Connection, challenge_id: str, *, now: datetime, until: datetime) -> bool:
    """Lease one challenge to this process; False when another process got it first."""
    result = conn.execute(
        challenges.update()
        .where(
            challenges.c.id == challenge_id,
            challenges.c.status == ChallengeStatus.PROCESSING,
            _unleased(now),
        )
        .values(lease_until=until)
    )
    return bool(result.rowcount)


async def release(db: Database, challenge_ids: Iterable[str]) -> None:
    """Hand leases back so another process (or this one, restarted) retries at once."""
    ids = list(challenge_ids)
    if not ids:
        return
    query = (
        challenges.update()
        .where(challenges.c.id.in_(ids), challenges.c.status == ChallengeStatus.PROCESSING)
        .values(lease_until=None)
    )
    await db.write(lambda conn: conn.execute(query))


_JOB = (
    sa.select(
        challenges.c.type,
        challenges.c.token,
        challenges.c.attempts,
        authorizations.c.identifier_value,
        authorizations.c.wildcard,
        authorizations.c.account_id,
        authorizations.c.identifier_type,
        accounts.c.key_thumbprint,
    )
    .join(authorizations, authorizations.c.id == challenges.c.authz_id)
    .join(accounts, accounts.c.id == authorizations.c.account_id)
    .where(
        challenges.c.id == sa.bindparam("id"),
        challenges.c.status == ChallengeStatus.PROCESSING,
    )
)


async def load_job(db: Database, challenge_id: str) -> ValidationJob | None:
    """The attempt's inputs, or None when the challenge is no longer processing."""
    row = await db.read(lambda conn: conn.execute(_JOB, {"id": challenge_id}).first())
    if row is None:
        return None
    return ValidationJob(
        row.type,
        row.token,
        row.identifier_value,
        row.key_thumbprint,
        row.attempts,
        account_id=row.account_id,
        wildcard=row.wildcard,
        identifier_type=row.identifier_type,
    )


async def finish(
    db: Database,
    challenge_id: str,
    *,
    valid: bool,
    error: dict[str, Any] | None,
    authz_lifetime: timedelta,
    caa_checked_at: datetime | None = None,
) -> None:
    """Record a final outcome (and let the authorization and order follow it)."""
    await db.write(
        lambda conn: order_store.finish_challenge(
            conn,
            challenge_id,
            valid=valid,
            error=error,
            authz_lifetime=authz_lifetime,
            caa_checked_at=caa_checked_at,
        )
    )


async def retry(
    db: Database, challenge_id: str, *, error: dict[str, Any], delay: timedelta
) -> None:
    """Record a transient failure: the challenge stays processing, due again after `delay`."""
    await db.write(
        lambda conn: order_store.retry_challenge(conn, challenge_id, error=error, delay=delay)
    )
