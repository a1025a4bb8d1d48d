"""Opening the store: units of work per process (see `executors`); who migrates it, and the
revision check.

Migrations have one owner: the ACME server (`serve` migrates on start, `Database.open`'s
default) and the explicit `acme-gateway store migrate` (a Helm init step). Every other
process (the operator) opens with `migrate=False` and calls `check_schema()`, which refuses
a store at any other revision than this code's head: a newer operator never migrates the
database under an older server, and an older one never writes a schema it does not know.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine

from acme_server.store.executors import AsyncEngineUnits, SqliteThreads, UnitRunner, Work
from acme_server.store.files import private_sqlite_files

T = TypeVar("T")

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


def default_database_url(data_dir: Path) -> str:
    return f"sqlite:///{(data_dir / 'acme-gateway.sqlite3').resolve()}"


def normalise_url(url: str) -> str:
    """Accept the URLs people write (postgresql://, sqlite:///) and pick our drivers:
    asyncpg for PostgreSQL, the standard library's sqlite3 (in store threads) for SQLite."""
    if url.startswith(("postgres://", "postgresql://")):
        return "postgresql+asyncpg://" + url.split("://", 1)[1]
    if url.startswith(("sqlite://", "sqlite+aiosqlite://")):
        return "sqlite+pysqlite://" + url.split("://", 1)[1]
    return url


def redact_url(url: str) -> str:
    """The store URL with its password hidden, for messages and logs."""
    try:
        return sa.engine.make_url(url).render_as_string(hide_password=True)
    except sa.exc.ArgumentError:
        return "<unparsable database URL>"


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
    """The process's handle on the store: units of work run through `read` and `write`.

    A unit is a plain function over a synchronous `sa.Connection`, run in one transaction
    (see `executors`): `read` for units that only read, `write` for any that may write.
    """

    def __init__(self, url: str, runner: UnitRunner, dialect: str) -> None:
        self.url = url
        self._runner = runner
        self._dialect = dialect

    @property
    def dialect(self) -> str:
        return self._dialect

    @classmethod
    async def open(cls, url: str, *, migrate: bool = True) -> Database:
        url = normalise_url(url)
        runner: UnitRunner
        if url.startswith("sqlite"):
            path = sa.engine.make_url(url).database
            if not path or path == ":memory:" or path.startswith("file:"):
                raise ValueError("the SQLite store must be a file (several threads share it)")
            private_sqlite_files(Path(path))
            runner = SqliteThreads(url)
            dialect = "sqlite"
        else:
            engine = create_async_engine(
                url,
                pool_recycle=3600,
                pool_size=10,
                max_overflow=10,
                pool_timeout=30,
                connect_args={"timeout": 10, "command_timeout": 30},
            )
            runner = AsyncEngineUnits(engine)
            dialect = engine.dialect.name
        db = cls(url, runner, dialect)
        if migrate:
            await db.migrate()
        return db

    async def read(self, work: Work[T]) -> T:
        """Run `work` in a transaction that only reads (never queued behind writers)."""
        return await self._runner.read(work)

    async def write(self, work: Work[T]) -> T:
        """Run `work` in one atomic transaction: committed on return, rolled back on raise."""
        return await self._runner.write(work)

    async def migrate(self) -> None:
        """Upgrade to this code's head (only the server and `store migrate` call this)."""
        await self.write(_upgrade_to_head)

    async def schema_revision(self) -> str | None:
        """The Alembic revision the store is at; None when it was never migrated."""
        return await self.read(_current_revision)

    async def check_schema(self) -> None:
        """Raise SchemaMismatch (one-line message) unless the store is at this code's head."""
        message = mismatch_message(await self.schema_revision(), head_revision())
        if message is not None:
            raise SchemaMismatch(message)

    async def close(self) -> None:
        await self._runner.close()


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
