"""Migration 0004_revocation_info goes up and down on real SQLite and PostgreSQL stores and
matches schema.py (tests/store/test_schema_agrees.py checks the head as a whole)."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.config import Config

from acme_server.store.database import MIGRATIONS_DIR, Database


def _to(conn: sa.Connection, down: bool, target: str) -> None:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.attributes["connection"] = conn
    (command.downgrade if down else command.upgrade)(cfg, target)


def _columns(conn: sa.Connection) -> tuple[set[str], set[str]]:
    inspector = sa.inspect(conn)
    cert_columns = {c["name"] for c in inspector.get_columns("certificates")}
    return cert_columns, set(inspector.get_table_names())


def _up_down_up(conn: sa.Connection) -> None:
    _to(conn, False, "0004_revocation_info")
    columns, tables = _columns(conn)
    assert "replaced_by_order_id" in columns and "crls" in tables
    _to(conn, True, "0002")
    columns, tables = _columns(conn)
    assert "replaced_by_order_id" not in columns and "crls" not in tables
    _to(conn, False, "0004_revocation_info")
    columns, tables = _columns(conn)
    assert "replaced_by_order_id" in columns and "crls" in tables


async def _walk(url: str) -> None:
    db = await Database.open(url, migrate=False)
    try:
        await db.write(_up_down_up)
    finally:
        await db.close()


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
async def test_up_down_up(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    if backend == "sqlite":
        url = f"sqlite:///{tmp_path / 'store.sqlite3'}"
    else:
        url = request.getfixturevalue("postgres_url")
    await _walk(url)
