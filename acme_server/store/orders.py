"""Orders, authorizations and challenges, and the state rules that tie them together."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from acme_server.store.ids import new_id
from acme_server.store.schema import authorizations, challenges, order_authorizations, orders

FINAL_AUTHZ = {"invalid", "deactivated", "expired", "revoked"}


@dataclass(frozen=True)
class Challenge:
    id: str
    authz_id: str
    type: str
    token: str
    status: str
    validated_at: datetime | None
    error: dict[str, Any] | None
    attempts: int


@dataclass(frozen=True)
class Authorization:
    id: str
    account_id: str
    identifier_value: str
    wildcard: bool
    status: str
    expires_at: datetime
    challenges: tuple[Challenge, ...]

    @property
    def identifier(self) -> str:
        return ("*." if self.wildcard else "") + self.identifier_value


@dataclass(frozen=True)
class Order:
    id: str
    account_id: str
    status: str
    identifiers: list[dict[str, str]]
    error: dict[str, Any] | None
    certificate_id: str | None
    expires_at: datetime
    created_at: datetime
    authz_ids: tuple[str, ...]

    @property
    def names(self) -> list[str]:
        return [i["value"] for i in self.identifiers]


def _challenge(row: Any) -> Challenge:
    return Challenge(
        row.id,
        row.authz_id,
        row.type,
        row.token,
        row.status,
        row.validated_at,
        row.error,
        row.attempts,
    )


async def _challenges_of(conn: AsyncConnection, authz_ids: list[str]) -> dict[str, list[Challenge]]:
    out: dict[str, list[Challenge]] = {a: [] for a in authz_ids}
    if authz_ids:
        rows = await conn.execute(
            sa.select(challenges)
            .where(challenges.c.authz_id.in_(authz_ids))
            .order_by(challenges.c.type.desc())
        )
        for row in rows:
            out[row.authz_id].append(_challenge(row))
    return out


async def get_authz(conn: AsyncConnection, authz_id: str) -> Authorization | None:
    row = (
        await conn.execute(sa.select(authorizations).where(authorizations.c.id == authz_id))
    ).first()
    if row is None:
        return None
    chals = (await _challenges_of(conn, [authz_id]))[authz_id]
    return Authorization(
        row.id,
        row.account_id,
        row.identifier_value,
        row.wildcard,
        row.status,
        row.expires_at,
        tuple(chals),
    )


async def get_challenge(conn: AsyncConnection, challenge_id: str) -> Challenge | None:
    row = (await conn.execute(sa.select(challenges).where(challenges.c.id == challenge_id))).first()
    return _challenge(row) if row else None


async def get_order(conn: AsyncConnection, order_id: str) -> Order | None:
    row = (await conn.execute(sa.select(orders).where(orders.c.id == order_id))).first()
    if row is None:
        return None
    authz_ids = (
        await conn.execute(
            sa.select(order_authorizations.c.authz_id)
            .where(order_authorizations.c.order_id == order_id)
            .order_by(order_authorizations.c.position)
        )
    ).scalars()
    return Order(
        row.id,
        row.account_id,
        row.status,
        row.identifiers,
        row.error,
        row.certificate_id,
        row.expires_at,
        row.created_at,
        tuple(authz_ids),
    )


async def find_reusable_authz(
    conn: AsyncConnection, account_id: str, value: str, wildcard: bool, now: datetime
) -> str | None:
    """A still-valid authorization of this account for this identifier, if any."""
    return (
        await conn.execute(
            sa.select(authorizations.c.id)
            .where(
                authorizations.c.account_id == account_id,
                authorizations.c.identifier_value == value,
                authorizations.c.wildcard == wildcard,
                authorizations.c.status == "valid",
                authorizations.c.expires_at > now,
            )
            .order_by(authorizations.c.expires_at.desc())
            .limit(1)
        )
    ).scalar()


async def create_order(
    conn: AsyncConnection,
    *,
    account_id: str,
    names: list[str],
    order_expires: datetime,
) -> Order:
    """New order for normalised names; reuses valid authorizations, else makes pending ones."""
    now = datetime.now(UTC)
    order_id = new_id()
    authz_ids: list[str] = []
    any_new = False
    for name in names:
        wildcard = name.startswith("*.")
        value = name[2:] if wildcard else name
        reuse = await find_reusable_authz(conn, account_id, value, wildcard, now)
        if reuse is not None:
            authz_ids.append(reuse)
            continue
        authz_id = new_id()
        await conn.execute(
            authorizations.insert().values(
                id=authz_id,
                account_id=account_id,
                identifier_value=value,
                wildcard=wildcard,
                status="pending",
                expires_at=order_expires,
                created_at=now,
            )
        )
        types = ["dns-01"] if wildcard else ["http-01", "dns-01"]
        await conn.execute(
            challenges.insert(),
            [
                {
                    "id": new_id(),
                    "authz_id": authz_id,
                    "type": t,
                    "token": secrets.token_urlsafe(32),
                    "status": "pending",
                    "attempts": 0,
                }
                for t in types
            ],
        )
        authz_ids.append(authz_id)
        any_new = True
    await conn.execute(
        orders.insert().values(
            id=order_id,
            account_id=account_id,
            # Reused authorizations are valid by construction: only new ones are pending.
            status="pending" if any_new else "ready",
            identifiers=[{"type": "dns", "value": n} for n in names],
            expires_at=order_expires,
            created_at=now,
        )
    )
    await conn.execute(
        order_authorizations.insert(),
        [{"order_id": order_id, "authz_id": a, "position": i} for i, a in enumerate(authz_ids)],
    )
    order = await get_order(conn, order_id)
    assert order is not None
    return order


async def list_order_ids(
    conn: AsyncConnection, account_id: str, *, after: tuple[datetime, str] | None, limit: int
) -> list[tuple[str, datetime]]:
    query = sa.select(orders.c.id, orders.c.created_at).where(orders.c.account_id == account_id)
    if after is not None:
        created, oid = after
        query = query.where(
            sa.or_(
                orders.c.created_at > created,
                sa.and_(orders.c.created_at == created, orders.c.id > oid),
            )
        )
    rows = await conn.execute(query.order_by(orders.c.created_at, orders.c.id).limit(limit))
    return [(r.id, r.created_at) for r in rows]


async def refresh_order(conn: AsyncConnection, order: Order) -> Order:
    """Apply expiry and authorization outcomes to a pending/ready order; persist changes.

    A ready order also turns invalid when one of its authorizations was deactivated or
    expired meanwhile (as Boulder does): finalizing must not use a given-up authorization.
    """
    now = datetime.now(UTC)
    if order.status not in ("pending", "ready"):
        return order
    await expire_authzs(conn, list(order.authz_ids), now)
    new_status, error = order.status, order.error
    if order.expires_at <= now:
        new_status = "invalid"
        error = {
            "type": "urn:ietf:params:acme:error:malformed",
            "detail": "order expired before it was finalized",
            "status": 400,
        }
    else:
        rows = (
            await conn.execute(
                sa.select(authorizations.c.status, authorizations.c.id).where(
                    authorizations.c.id.in_(order.authz_ids)
                )
            )
        ).all()
        statuses = {r.status for r in rows}
        if statuses & FINAL_AUTHZ:
            new_status = "invalid"
            error = await _first_challenge_error(
                conn, [r.id for r in rows if r.status in FINAL_AUTHZ]
            )
        elif order.status == "pending" and statuses == {"valid"}:
            new_status = "ready"
    if new_status != order.status:
        await conn.execute(
            orders.update()
            .where(orders.c.id == order.id, orders.c.status == order.status)
            .values(status=new_status, error=error)
        )
        fresh = await get_order(conn, order.id)
        assert fresh is not None
        return fresh
    return order


async def _first_challenge_error(conn: AsyncConnection, authz_ids: list[str]) -> dict[str, Any]:
    err = (
        await conn.execute(
            sa.select(challenges.c.error)
            .where(challenges.c.authz_id.in_(authz_ids), challenges.c.error.is_not(None))
            .limit(1)
        )
    ).scalar()
    return err or {
        "type": "urn:ietf:params:acme:error:unauthorized",
        "detail": "an authorization of this order is no longer valid",
        "status": 403,
    }


async def expire_authzs(conn: AsyncConnection, authz_ids: list[str], now: datetime) -> None:
    if authz_ids:
        await conn.execute(
            authorizations.update()
            .where(
                authorizations.c.id.in_(authz_ids),
                authorizations.c.status.in_(("pending", "valid")),
                authorizations.c.expires_at <= now,
            )
            .values(status="expired")
        )


async def orders_of_authz(conn: AsyncConnection, authz_id: str) -> list[Order]:
    ids = (
        await conn.execute(
            sa.select(order_authorizations.c.order_id).where(
                order_authorizations.c.authz_id == authz_id
            )
        )
    ).scalars()
    out = []
    for oid in list(ids):
        order = await get_order(conn, oid)
        if order is not None:
            out.append(order)
    return out


async def set_authz_status(
    conn: AsyncConnection, authz_id: str, status: str, *, expires_at: datetime | None = None
) -> None:
    values: dict[str, Any] = {"status": status}
    if expires_at is not None:
        values["expires_at"] = expires_at
    await conn.execute(
        authorizations.update().where(authorizations.c.id == authz_id).values(**values)
    )
    for order in await orders_of_authz(conn, authz_id):
        await refresh_order(conn, order)


async def start_challenge(conn: AsyncConnection, challenge_id: str) -> bool:
    """pending -> processing, due now. False when it was not pending (already started)."""
    result = await conn.execute(
        challenges.update()
        .where(challenges.c.id == challenge_id, challenges.c.status == "pending")
        .values(status="processing", next_attempt_at=datetime.now(UTC), attempts=0)
    )
    return bool(result.rowcount)


async def finish_challenge(
    conn: AsyncConnection,
    challenge_id: str,
    *,
    valid: bool,
    error: dict[str, Any] | None,
    authz_lifetime: timedelta,
) -> None:
    chal = await get_challenge(conn, challenge_id)
    if chal is None or chal.status != "processing":
        return
    now = datetime.now(UTC)
    await conn.execute(
        challenges.update()
        .where(challenges.c.id == challenge_id)
        .values(
            status="valid" if valid else "invalid",
            validated_at=now if valid else None,
            error=error,
            lease_until=None,
            next_attempt_at=None,
            attempts=chal.attempts + 1,
        )
    )
    authz = await get_authz(conn, chal.authz_id)
    if authz is None or authz.status != "pending":
        return
    if valid:
        await set_authz_status(conn, authz.id, "valid", expires_at=now + authz_lifetime)
    else:
        await set_authz_status(conn, authz.id, "invalid")


async def retry_challenge(
    conn: AsyncConnection, challenge_id: str, *, error: dict[str, Any], delay: timedelta
) -> None:
    await conn.execute(
        challenges.update()
        .where(challenges.c.id == challenge_id, challenges.c.status == "processing")
        .values(
            error=error,
            attempts=challenges.c.attempts + 1,
            next_attempt_at=datetime.now(UTC) + delay,
            lease_until=None,
        )
    )


async def set_order_status(
    conn: AsyncConnection, order_id: str, *, expect: str, status: str, **values: Any
) -> bool:
    result = await conn.execute(
        orders.update()
        .where(orders.c.id == order_id, orders.c.status == expect)
        .values(status=status, **values)
    )
    return bool(result.rowcount)


async def valid_authz_names(conn: AsyncConnection, account_id: str, now: datetime) -> set[str]:
    """Identifier values (without `*.`) the account currently holds valid authorizations for."""
    rows = await conn.execute(
        sa.select(authorizations.c.identifier_value).where(
            authorizations.c.account_id == account_id,
            authorizations.c.status == "valid",
            authorizations.c.expires_at > now,
        )
    )
    return set(rows.scalars())
