"""ACME accounts: one per key thumbprint, optionally bound to a pre-registration."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from acme_server.domain.statuses import AccountStatus
from acme_server.store.ids import new_id
from acme_server.store.schema import accounts, registrations


@dataclass(frozen=True)
class Account:
    id: str
    key_thumbprint: str
    jwk: dict[str, Any]
    status: AccountStatus
    contact: list[str]
    tos_agreed: bool
    registration_id: int | None
    eab_kid: str | None
    eab_binding: dict[str, Any] | None
    created_at: datetime


def _account(row: Any) -> Account:
    return Account(
        id=row.id,
        key_thumbprint=row.key_thumbprint,
        jwk=row.jwk,
        status=AccountStatus(row.status),
        contact=list(row.contact),
        tos_agreed=row.tos_agreed,
        registration_id=row.registration_id,
        eab_kid=row.eab_kid,
        eab_binding=row.eab_binding,
        created_at=row.created_at,
    )


_BY_ID = sa.select(accounts).where(accounts.c.id == sa.bindparam("id"))


def by_id(conn: sa.Connection, account_id: str) -> Account | None:
    row = conn.execute(_BY_ID, {"id": account_id}).first()
    return _account(row) if row else None


def by_thumbprint(conn: sa.Connection, thumbprint: str) -> Account | None:
    row = (conn.execute(sa.select(accounts).where(accounts.c.key_thumbprint == thumbprint))).first()
    return _account(row) if row else None


def count_for_registration(conn: sa.Connection, registration_id: int) -> int:
    """Live (valid) accounts bound to the registration: deactivated ones free their slot."""
    return int(
        (
            conn.execute(
                sa.select(sa.func.count())
                .select_from(accounts)
                .where(
                    accounts.c.registration_id == registration_id,
                    accounts.c.status == AccountStatus.VALID,
                )
            )
        ).scalar_one()
    )


def lock_registration(conn: sa.Connection, registration_id: int) -> None:
    """Serialise account binding per registration so max_accounts holds under concurrency."""
    if conn.dialect.name == "postgresql":
        conn.execute(
            sa.select(registrations.c.id)
            .where(registrations.c.id == registration_id)
            .with_for_update()
        )


def create(
    conn: sa.Connection,
    *,
    thumbprint: str,
    jwk: dict[str, Any],
    contact: list[str],
    tos_agreed: bool,
    registration_id: int | None,
    eab_kid: str | None,
    eab_binding: dict[str, Any] | None,
) -> Account:
    account_id = new_id()
    values = {
        "id": account_id,
        "key_thumbprint": thumbprint,
        "jwk": jwk,
        "status": AccountStatus.VALID,
        "contact": contact,
        "tos_agreed": tos_agreed,
        "registration_id": registration_id,
        "eab_kid": eab_kid,
        "eab_binding": eab_binding,
        "created_at": datetime.now(UTC),
    }
    conn.execute(accounts.insert().values(**values))
    account = by_id(conn, account_id)
    assert account is not None
    return account


def update(conn: sa.Connection, account_id: str, **values: Any) -> Account:
    conn.execute(accounts.update().where(accounts.c.id == account_id).values(**values))
    account = by_id(conn, account_id)
    assert account is not None
    return account
