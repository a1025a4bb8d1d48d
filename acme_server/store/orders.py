"""Orders, authorizations and challenges: their rows, persisted as the domain core decides.

The state rules themselves live in `acme_server.domain.lifecycle`; this module only reads
the statuses it needs and writes the outcome.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from acme_server.domain import lifecycle
from acme_server.domain.identifiers import Identifier, IdentifierType
from acme_server.domain.lifecycle import InvalidCause
from acme_server.domain.statuses import AuthorizationStatus, ChallengeStatus, OrderStatus
from acme_server.store.ids import new_id
from acme_server.store.schema import authorizations, challenges, order_authorizations, orders


@dataclass(frozen=True)
class Challenge:
    id: str
    authz_id: str
    type: str
    token: str
    status: ChallengeStatus
    validated_at: datetime | None
    error: dict[str, Any] | None
    attempts: int


@dataclass(frozen=True)
class Authorization:
    id: str
    account_id: str
    identifier_value: str
    wildcard: bool
    status: AuthorizationStatus
    expires_at: datetime
    challenges: tuple[Challenge, ...]
    caa_checked_at: datetime | None = None  # when CAA last allowed issuance (None: never)
    identifier_type: str = IdentifierType.DNS  # "dns" | "ip" (RFC 8738)

    @property
    def validated_by(self) -> str | None:
        """The type of the challenge that validated it (what CAA validationmethods names)."""
        return next((c.type for c in self.challenges if c.status == ChallengeStatus.VALID), None)

    @property
    def identifier(self) -> str:
        return ("*." if self.wildcard else "") + self.identifier_value


@dataclass(frozen=True)
class Order:
    id: str
    account_id: str
    status: OrderStatus
    identifiers: list[dict[str, str]]
    error: dict[str, Any] | None
    certificate_id: str | None
    expires_at: datetime
    created_at: datetime
    authz_ids: tuple[str, ...]
    profile: str | None = None  # None: placed before profiles existed
    not_before: datetime | None = None  # as requested in newOrder (RFC 8555 7.4)
    not_after: datetime | None = None

    @property
    def names(self) -> list[str]:
        return [i["value"] for i in self.identifiers]

    @property
    def typed_identifiers(self) -> list[Identifier]:
        return [Identifier(IdentifierType(i["type"]), i["value"]) for i in self.identifiers]


def _challenge(row: Any) -> Challenge:
    return Challenge(
        row.id,
        row.authz_id,
        row.type,
        row.token,
        ChallengeStatus(row.status),
        row.validated_at,
        row.error,
        row.attempts,
    )


# Statements every request runs, built once (bound parameters) rather than per call.
_CHALLENGES_OF = (
    sa.select(challenges)
    .where(challenges.c.authz_id.in_(sa.bindparam("ids", expanding=True)))
    .order_by(challenges.c.type.desc())
)
_AUTHZ = sa.select(authorizations).where(authorizations.c.id == sa.bindparam("id"))
_CHALLENGE = sa.select(challenges).where(challenges.c.id == sa.bindparam("id"))
_ORDER = sa.select(orders).where(orders.c.id == sa.bindparam("id"))
_ORDER_AUTHZ_IDS = (
    sa.select(order_authorizations.c.authz_id)
    .where(order_authorizations.c.order_id == sa.bindparam("id"))
    .order_by(order_authorizations.c.position)
)


def _challenges_of(conn: sa.Connection, authz_ids: list[str]) -> dict[str, list[Challenge]]:
    out: dict[str, list[Challenge]] = {a: [] for a in authz_ids}
    if authz_ids:
        for row in conn.execute(_CHALLENGES_OF, {"ids": authz_ids}):
            out[row.authz_id].append(_challenge(row))
    return out


def get_authz(conn: sa.Connection, authz_id: str) -> Authorization | None:
    row = conn.execute(_AUTHZ, {"id": authz_id}).first()
    if row is None:
        return None
    chals = (_challenges_of(conn, [authz_id]))[authz_id]
    return Authorization(
        row.id,
        row.account_id,
        row.identifier_value,
        row.wildcard,
        AuthorizationStatus(row.status),
        row.expires_at,
        tuple(chals),
        caa_checked_at=row.caa_checked_at,
        identifier_type=row.identifier_type,
    )


def get_challenge(conn: sa.Connection, challenge_id: str) -> Challenge | None:
    row = conn.execute(_CHALLENGE, {"id": challenge_id}).first()
    return _challenge(row) if row else None


def get_order(conn: sa.Connection, order_id: str) -> Order | None:
    row = conn.execute(_ORDER, {"id": order_id}).first()
    if row is None:
        return None
    return _order(row, tuple(conn.execute(_ORDER_AUTHZ_IDS, {"id": order_id}).scalars()))


def _order(row: Any, authz_ids: tuple[str, ...]) -> Order:
    return Order(
        row.id,
        row.account_id,
        OrderStatus(row.status),
        row.identifiers,
        row.error,
        row.certificate_id,
        row.expires_at,
        row.created_at,
        authz_ids,
        row.profile,
        row.not_before,
        row.not_after,
    )


def find_reusable_authz(
    conn: sa.Connection,
    account_id: str,
    value: str,
    wildcard: bool,
    now: datetime,
    identifier_type: str = IdentifierType.DNS,
) -> str | None:
    """A still-valid authorization of this account for this identifier (of this type: an
    ip authorization never stands for a dns name of the same text), if any."""
    return (
        conn.execute(
            sa.select(authorizations.c.id)
            .where(
                authorizations.c.account_id == account_id,
                authorizations.c.identifier_type == str(identifier_type),
                authorizations.c.identifier_value == value,
                authorizations.c.wildcard == wildcard,
                authorizations.c.status == AuthorizationStatus.VALID,
                authorizations.c.expires_at > now,
            )
            .order_by(authorizations.c.expires_at.desc())
            .limit(1)
        )
    ).scalar()


def create_order(
    conn: sa.Connection,
    *,
    account_id: str,
    names: list[str] | list[Identifier],
    order_expires: datetime,
    profile: str | None = None,
    not_before: datetime | None = None,
    not_after: datetime | None = None,
) -> Order:
    """New order for normalised identifiers (a plain string is a DNS name, or an IP literal
    as `Identifier.of` reads it); reuses valid authorizations, else makes pending ones."""
    now = datetime.now(UTC)
    order_id = new_id()
    authz_ids: list[str] = []
    any_new = False
    idents = [n if isinstance(n, Identifier) else Identifier.of(n) for n in names]
    for ident in idents:
        wildcard = ident.wildcard
        value = ident.value[2:] if wildcard else ident.value
        ip = ident.type is IdentifierType.IP
        reuse = find_reusable_authz(conn, account_id, value, wildcard, now, ident.type)
        if reuse is not None:
            authz_ids.append(reuse)
            continue
        authz_id = new_id()
        conn.execute(
            authorizations.insert().values(
                id=authz_id,
                account_id=account_id,
                identifier_value=value,
                identifier_type=str(ident.type),
                wildcard=wildcard,
                status=AuthorizationStatus.PENDING,
                expires_at=order_expires,
                created_at=now,
            )
        )
        conn.execute(
            challenges.insert(),
            [
                {
                    "id": new_id(),
                    "authz_id": authz_id,
                    "type": t,
                    "token": secrets.token_urlsafe(32),
                    "status": ChallengeStatus.PENDING,
                    "attempts": 0,
                }
                for t in lifecycle.challenge_types(wildcard, ip=ip)
            ],
        )
        authz_ids.append(authz_id)
        any_new = True
    conn.execute(
        orders.insert().values(
            id=order_id,
            account_id=account_id,
            status=lifecycle.new_order_status(any_new),
            identifiers=[i.to_json() for i in idents],
            expires_at=order_expires,
            created_at=now,
            profile=profile,
            not_before=not_before,
            not_after=not_after,
        )
    )
    conn.execute(
        order_authorizations.insert(),
        [{"order_id": order_id, "authz_id": a, "position": i} for i, a in enumerate(authz_ids)],
    )
    order = get_order(conn, order_id)
    assert order is not None
    return order


def list_order_ids(
    conn: sa.Connection, account_id: str, *, after: tuple[datetime, str] | None, limit: int
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
    rows = conn.execute(query.order_by(orders.c.created_at, orders.c.id).limit(limit))
    return [(r.id, r.created_at) for r in rows]


def authz_expired(authz: Authorization, now: datetime) -> bool:
    """True when reading `authz` must first record its expiry (`expire_authzs`)."""
    return authz.status in lifecycle.EXPIRABLE_AUTHZ and authz.expires_at <= now


def needs_refresh(conn: sa.Connection, order: Order, now: datetime) -> bool:
    """Would `refresh_order` change anything? Asked in a read, so only a change writes."""
    if order.status not in lifecycle.REFRESHABLE_ORDER:
        return False
    statuses = []
    for row in conn.execute(_AUTHZ_STATES, {"ids": list(order.authz_ids)}):
        status = AuthorizationStatus(row.status)
        if status in lifecycle.EXPIRABLE_AUTHZ and row.expires_at <= now:
            return True
        statuses.append(status)
    return lifecycle.order_outcome(order.status, order.expires_at, now, statuses) is not None


_AUTHZ_STATES = sa.select(authorizations.c.status, authorizations.c.expires_at).where(
    authorizations.c.id.in_(sa.bindparam("ids", expanding=True))
)
_AUTHZ_STATES_BY_ID = sa.select(
    authorizations.c.id, authorizations.c.status, authorizations.c.expires_at
).where(authorizations.c.id.in_(sa.bindparam("ids", expanding=True)))


def refresh_order(conn: sa.Connection, order: Order) -> Order:
    """Apply expiry and authorization outcomes to a pending/ready order (as
    `lifecycle.order_outcome` decides) and persist the change."""
    now = datetime.now(UTC)
    if order.status not in lifecycle.REFRESHABLE_ORDER:
        return order
    # Read the authorizations once; write only the expiries and the outcome that happened.
    statuses: dict[str, AuthorizationStatus] = {}
    for row in conn.execute(_AUTHZ_STATES_BY_ID, {"ids": list(order.authz_ids)}):
        status = AuthorizationStatus(row.status)
        if status in lifecycle.EXPIRABLE_AUTHZ and row.expires_at <= now:
            status = AuthorizationStatus.EXPIRED
        statuses[row.id] = status
    expired = [a for a, s in statuses.items() if s == AuthorizationStatus.EXPIRED]
    if expired:
        expire_authzs(conn, expired, now)
    outcome = lifecycle.order_outcome(order.status, order.expires_at, now, statuses.values())
    if outcome is None:
        return order
    error = order.error
    if outcome.cause is InvalidCause.EXPIRED:
        error = lifecycle.order_expired_error()
    elif outcome.cause is InvalidCause.AUTHZ_FAILED:
        failed = [a for a, s in statuses.items() if s in lifecycle.FINAL_AUTHZ]
        error = _first_challenge_error(conn, failed) or lifecycle.authz_failed_error()
    conn.execute(
        orders.update()
        .where(orders.c.id == order.id, orders.c.status == order.status)
        .values(status=outcome.status, error=error)
    )
    fresh = get_order(conn, order.id)
    assert fresh is not None
    return fresh


def _first_challenge_error(conn: sa.Connection, authz_ids: list[str]) -> dict[str, Any] | None:
    err: dict[str, Any] | None = (
        conn.execute(
            sa.select(challenges.c.error)
            .where(challenges.c.authz_id.in_(authz_ids), challenges.c.error.is_not(None))
            .limit(1)
        )
    ).scalar()
    return err


def expire_authzs(conn: sa.Connection, authz_ids: list[str], now: datetime) -> None:
    if authz_ids:
        conn.execute(
            authorizations.update()
            .where(
                authorizations.c.id.in_(authz_ids),
                authorizations.c.status.in_(lifecycle.EXPIRABLE_AUTHZ),
                authorizations.c.expires_at <= now,
            )
            .values(status=AuthorizationStatus.EXPIRED)
        )


_REFRESHABLE_ORDERS_OF_AUTHZ = (
    sa.select(orders)
    .join(order_authorizations, order_authorizations.c.order_id == orders.c.id)
    .where(
        order_authorizations.c.authz_id == sa.bindparam("authz_id"),
        orders.c.status.in_([s.value for s in lifecycle.REFRESHABLE_ORDER]),
    )
)


def refreshable_orders_of_authz(conn: sa.Connection, authz_id: str) -> list[Order]:
    """The pending/ready orders using the authorization: the only ones it can move on."""
    out = []
    for row in conn.execute(_REFRESHABLE_ORDERS_OF_AUTHZ, {"authz_id": authz_id}).all():
        authz_ids = conn.execute(_ORDER_AUTHZ_IDS, {"id": row.id}).scalars()
        out.append(_order(row, tuple(authz_ids)))
    return out


def set_authz_status(
    conn: sa.Connection,
    authz_id: str,
    status: AuthorizationStatus,
    *,
    expires_at: datetime | None = None,
) -> None:
    """Persist an authorization status the core decided, then refresh the orders using it."""
    values: dict[str, Any] = {"status": status}
    if expires_at is not None:
        values["expires_at"] = expires_at
    conn.execute(authorizations.update().where(authorizations.c.id == authz_id).values(**values))
    for order in refreshable_orders_of_authz(conn, authz_id):
        refresh_order(conn, order)


def start_challenge(
    conn: sa.Connection, challenge_id: str, *, lease_until: datetime | None = None
) -> bool:
    """pending -> processing, due now (leased to the caller's process until `lease_until`,
    if given). False when it was not pending (already started)."""
    result = conn.execute(
        challenges.update()
        .where(challenges.c.id == challenge_id, challenges.c.status == ChallengeStatus.PENDING)
        .values(
            status=ChallengeStatus.PROCESSING,
            next_attempt_at=datetime.now(UTC),
            attempts=0,
            lease_until=lease_until,
        )
    )
    return bool(result.rowcount)


def finish_challenge(
    conn: sa.Connection,
    challenge_id: str,
    *,
    valid: bool,
    error: dict[str, Any] | None,
    authz_lifetime: timedelta,
    caa_checked_at: datetime | None = None,
) -> None:
    """Record a validation result and let the core decide the authorization's fate
    (`caa_checked_at`: when CAA allowed issuance for it, if checked)."""
    chal = get_challenge(conn, challenge_id)
    if chal is None or chal.status != ChallengeStatus.PROCESSING:
        return
    now = datetime.now(UTC)
    conn.execute(
        challenges.update()
        .where(challenges.c.id == challenge_id)
        .values(
            status=lifecycle.challenge_result(valid),
            validated_at=now if valid else None,
            error=error,
            lease_until=None,
            next_attempt_at=None,
            attempts=chal.attempts + 1,
        )
    )
    authz = conn.execute(_AUTHZ, {"id": chal.authz_id}).first()  # its challenges not needed
    if authz is None:
        return
    decided = lifecycle.authz_after_challenge(AuthorizationStatus(authz.status), valid)
    if decided is AuthorizationStatus.VALID:
        set_authz_status(conn, authz.id, decided, expires_at=now + authz_lifetime)
        if caa_checked_at is not None:
            mark_caa_checked(conn, [authz.id], caa_checked_at)
    elif decided is not None:
        set_authz_status(conn, authz.id, decided)


def retry_challenge(
    conn: sa.Connection, challenge_id: str, *, error: dict[str, Any], delay: timedelta
) -> None:
    conn.execute(
        challenges.update()
        .where(challenges.c.id == challenge_id, challenges.c.status == ChallengeStatus.PROCESSING)
        .values(
            error=error,
            attempts=challenges.c.attempts + 1,
            next_attempt_at=datetime.now(UTC) + delay,
            lease_until=None,
        )
    )


def set_order_status(
    conn: sa.Connection,
    order_id: str,
    *,
    expect: OrderStatus,
    status: OrderStatus,
    **values: Any,
) -> bool:
    """Compare-and-set: move the order from `expect` to `status`; False if it was not `expect`."""
    assert lifecycle.can_transition(lifecycle.ORDER_TRANSITIONS, expect, status), (expect, status)
    result = conn.execute(
        orders.update()
        .where(orders.c.id == order_id, orders.c.status == expect)
        .values(status=status, **values)
    )
    return bool(result.rowcount)


def valid_authz_names(conn: sa.Connection, account_id: str, now: datetime) -> set[str]:
    """Identifier values (without `*.`) the account currently holds valid authorizations for."""
    rows = conn.execute(
        sa.select(authorizations.c.identifier_value).where(
            authorizations.c.account_id == account_id,
            authorizations.c.status == AuthorizationStatus.VALID,
            authorizations.c.expires_at > now,
        )
    )
    return set(rows.scalars())


def mark_caa_checked(conn: sa.Connection, authz_ids: list[str], at: datetime) -> None:
    """Record that CAA allowed issuance for these authorizations at `at`."""
    if authz_ids:
        conn.execute(
            authorizations.update()
            .where(authorizations.c.id.in_(authz_ids))
            .values(caa_checked_at=at)
        )
