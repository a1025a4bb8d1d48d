"""Opening the store: one async engine per process; who migrates it, and the revision check.

Migrations have one owner: the ACME server (`serve` migrates on start, `Database.open`'s
default) and the explicit `acme-gateway store migrate` (a Helm init step). Every other
process (the operator) opens with `migrate=False` and calls `check_schema()`, which refuses
a store at any other revision than this code's head: a newer operator never migrates the
database under an older server, and an older one never writes a schema it does not know.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from acme_server.store.files import private_sqlite_files

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


def default_database_url(data_dir: Path) -> str:
    return f"sqlite+aiosqlite:///{(data_dir / 'acme-gateway.sqlite3').resolve()}"


def normalise_url(url: str) -> str:
    """Accept the URLs people write (postgresql://, sqlite:///) and pick our async drivers."""
    if url.startswith(("postgres://", "postgresql://")):
        return "postgresql+asyncpg://" + url.split("://", 1)[1]
    if url.startswith("sqlite://"):
        return "sqlite+aiosqlite://" + url.split("://", 1)[1]
    return url


def redact_url(url: str) -> str:
    """The store URL with its password hidden, for messages and logs."""
    try:
        return sa.engine.make_url(url).render_as_string(hide_password=True)
    except sa.exc.ArgumentError:
        return "<unparsable database URL>"


def _configure_sqlite(engine: AsyncEngine) -> None:
    # SQLite has one writer: take the write lock at BEGIN (IMMEDIATE) so concurrent
    # processes wait on busy_timeout instead of failing a read->write upgrade.
    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: sa.Connection) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")


class SchemaMismatch(RuntimeError):
    """The store's schema revision is not the one this code was written for."""


def _script() -> Any:
    from alembic.script import ScriptDirectory

    return ScriptDirectory(str(MIGRATIONS_DIR))


def head_revision() -> str:
    """The newest migration this code ships (what `store migrate` upgrades to)."""
    head = _script().get_current_head()
    assert head is not None
    return str(head)


def _current_revision(sync_conn: sa.Connection) -> str | None:
    from alembic.runtime.migration import MigrationContext

    return MigrationContext.configure(sync_conn).get_current_revision()


def mismatch_message(current: str | None, head: str) -> str | None:
    """One line saying why a store at `current` cannot be used by code at `head`; None if it can."""
    if current == head:
        return None
    if current is None:
        return (
            f"the store has no schema yet (this code needs revision {head}): "
            "run `acme-gateway store migrate` (or start the ACME server) first"
        )
    known = {rev.revision for rev in _script().walk_revisions()}
    if current in known:
        return (
            f"the store's schema is at revision {current}, older than this code's {head}: "
            "run `acme-gateway store migrate` (or upgrade the ACME server) first"
        )
    return (
        f"the store's schema is at revision {current}, unknown to this code (head {head}): "
        "it was migrated by a newer acme-gateway; run the matching version"
    )


class Database:
    """The process's handle on the store."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        # SQLite has one writer and every transaction here takes the write lock: queue them
        # in-process instead of letting connections spin on SQLite's busy handler.
        self._sqlite_lock = asyncio.Lock() if engine.dialect.name == "sqlite" else None

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @classmethod
    async def open(cls, url: str, *, migrate: bool = True) -> Database:
        url = normalise_url(url)
        kwargs: dict[str, Any] = {"pool_pre_ping": True}
        if url.startswith("sqlite"):
            kwargs["connect_args"] = {"timeout": 30}
            path = sa.engine.make_url(url).database
            if path and path != ":memory:" and not path.startswith("file:"):
                private_sqlite_files(Path(path))
        else:
            kwargs.update(pool_size=10, max_overflow=10, pool_timeout=30)
            kwargs["connect_args"] = {"timeout": 10, "command_timeout": 30}
        engine = create_async_engine(url, **kwargs)
        if engine.dialect.name == "sqlite":
            _configure_sqlite(engine)
        db = cls(engine)
        if migrate:
            await db.migrate()
        return db

    async def migrate(self) -> None:
        """Upgrade to this code's head (only the server and `store migrate` call this)."""
        async with self.engine.begin() as conn:
            await conn.run_sync(_upgrade_to_head)

    async def schema_revision(self) -> str | None:
        """The Alembic revision the store is at; None when it was never migrated."""
        async with self.engine.connect() as conn:
            return await conn.run_sync(_current_revision)

    async def check_schema(self) -> None:
        """Raise SchemaMismatch (one-line message) unless the store is at this code's head."""
        message = mismatch_message(await self.schema_revision(), head_revision())
        if message is not None:
            raise SchemaMismatch(message)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncConnection]:
        """One atomic unit of work: committed on success, rolled back on any error."""
        if self._sqlite_lock is None:
            async with self.engine.begin() as conn:
                yield conn
            return
        async with self._sqlite_lock, self.engine.begin() as conn:
            yield conn

    async def close(self) -> None:
        await self.engine.dispose()


def _upgrade_to_head(sync_conn: sa.Connection) -> None:
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.attributes["connection"] = sync_conn
    # Several processes may start together on one PostgreSQL: serialise migrations.
    if sync_conn.dialect.name == "postgresql":
        sync_conn.exec_driver_sql("SELECT pg_advisory_xact_lock(8555)")
    command.upgrade(cfg, "head")
