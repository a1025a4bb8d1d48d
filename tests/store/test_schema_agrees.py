"""store/schema.py and the Alembic migrations describe the same database, on both dialects."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from acme_server.store.database import Database
from acme_server.store.schema import metadata


def _diff(sync_conn: sa.Connection) -> list[Any]:
    ctx = MigrationContext.configure(
        sync_conn, opts={"compare_type": True, "compare_server_default": False}
    )
    return list(compare_metadata(ctx, metadata))


async def _migrated_diff(url: str) -> list[Any]:
    db = await Database.open(url)  # migrates to head
    try:
        return await db.read(_diff)
    finally:
        await db.close()


async def test_migrations_match_schema_sqlite(tmp_path: Path) -> None:
    diff = await _migrated_diff(f"sqlite:///{tmp_path / 'store.sqlite3'}")
    assert diff == [], f"schema.py and the migrations disagree on SQLite: {diff}"


async def test_migrations_match_schema_postgresql(postgres_url: str) -> None:
    diff = await _migrated_diff(postgres_url)
    assert diff == [], f"schema.py and the migrations disagree on PostgreSQL: {diff}"


def test_compare_sees_a_difference(tmp_path: Path) -> None:
    """The check can fail: a table the migrations never created shows up as a difference."""
    extra = sa.MetaData()
    for table in metadata.tables.values():
        table.to_metadata(extra)
    sa.Table("not_migrated", extra, sa.Column("id", sa.Integer, primary_key=True))
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'empty.sqlite3'}")
    with engine.connect() as conn:
        metadata.create_all(conn)
        ctx = MigrationContext.configure(conn)
        diff = compare_metadata(ctx, extra)
    engine.dispose()
    assert [d[0] for d in diff] == ["add_table"]
    assert diff[0][1].name == "not_migrated"
