"""Migration 0002 on a store built at 0001: no registration is widened by the upgrade."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config

from acme_server.domain.identifiers import DomainRule
from acme_server.store import registrations
from acme_server.store.database import MIGRATIONS_DIR, Database


async def _build_at_0001(url: str) -> None:
    """A real store at revision 0001 with one formerly-open and one restricted registration."""
    db = await Database.open(url, migrate=False)
    try:
        await db.write(_fill_0001)
    finally:
        await db.close()


def _fill_0001(conn: sa.Connection) -> None:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.attributes["connection"] = conn
    command.upgrade(cfg, "0001")
    now = datetime.now(UTC).replace(tzinfo=None)
    base = {"hmac_key": "k" * 43, "suspended": False, "created_at": now, "updated_at": now}
    conn.execute(
        sa.text(
            "INSERT INTO registrations (name, kid, hmac_key, suspended, created_at, "
            "updated_at) VALUES (:name, :kid, :hmac_key, :suspended, :created_at, "
            ":updated_at)"
        ),
        [
            {"name": "legacy-any", "kid": "kid-any", **base},
            {"name": "scoped", "kid": "kid-s", **base},
        ],
    )
    conn.execute(
        sa.text(
            "INSERT INTO allowed_domains (registration_id, domain, include_subdomains, "
            "allow_wildcard) SELECT id, 'example.com', :t, :t FROM registrations "
            "WHERE name = 'scoped'"
        ),
        {"t": True},
    )


async def _upgrade_and_read(url: str) -> dict[str, registrations.Registration]:
    await _build_at_0001(url)
    db = await Database.open(url)
    try:
        return {r.name: r for r in await registrations.list_all(db)}
    finally:
        await db.close()


def _check(url: str) -> None:
    regs = asyncio.run(_upgrade_and_read(url))
    legacy, scoped = regs["legacy-any"], regs["scoped"]
    assert legacy.any_domain is False and legacy.domains == ()
    assert legacy.grants_nothing
    assert scoped.any_domain is False
    assert scoped.domains == (DomainRule("example.com", True, True),)
    assert (legacy.max_pending_orders, legacy.max_pending_authorizations) == (None, None)


def test_upgrade_0001_sqlite_grants_nothing_to_empty_lists(tmp_path: Path) -> None:
    _check(f"sqlite:///{tmp_path / 'store.sqlite3'}")


def test_upgrade_0001_postgres_grants_nothing_to_empty_lists(postgres_url: str) -> None:
    _check(postgres_url)
