"""Where a unit of store work runs: the event loop never waits on a database driver.

A unit of work is a plain function over a synchronous SQLAlchemy `Connection`; it runs in
one transaction, committed when it returns and rolled back when it raises. Running a whole
unit in one place costs one hand-off per request instead of one (or several) per SQL
statement, which is what made the async driver layers the server's main CPU cost.

* SQLite (`SqliteThreads`): one writer thread owns the only writing connection of this
  process (`BEGIN IMMEDIATE`: the write lock is taken up front, so a unit never fails a
  read-to-write upgrade), and reader threads read WAL snapshots without taking it, so reads
  are never queued behind writes. Other processes on the same file wait on SQLite's busy
  handler in their own writer thread, never on the event loop.
* PostgreSQL (`AsyncEngineUnits`): asyncpg's own async I/O; the unit runs in SQLAlchemy's
  greenlet bridge (`run_sync`), so its statements need no thread at all.
"""

from __future__ import annotations

import asyncio
import fcntl
import functools
import os
import threading
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol, TypeVar, cast

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine

from acme_server.metrics import STORE_UNIT_ERRORS, STORE_UNIT_SECONDS

T = TypeVar("T")
Work = Callable[[sa.Connection], T]
F = TypeVar("F", bound=Callable[..., Awaitable[Any]])

SQLITE_BUSY_TIMEOUT_MS = 30000
SQLITE_READERS = 2


def _measured(kind: str) -> Callable[[F], F]:
    """Time a unit (queueing for its thread included) and count it when the database
    failed; an IntegrityError is a constraint doing its job (a race lost), not a failure."""
    seconds, errors = STORE_UNIT_SECONDS.labels(kind), STORE_UNIT_ERRORS.labels(kind)

    def wrap(method: F) -> F:
        @functools.wraps(method)
        async def measured(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return await method(*args, **kwargs)
            except (sa.exc.SQLAlchemyError, OSError) as exc:
                if not isinstance(exc, sa.exc.IntegrityError):
                    errors.inc()
                raise
            finally:
                seconds.observe(time.perf_counter() - start)

        return cast(F, measured)

    return wrap


class UnitRunner(Protocol):
    async def read(self, work: Work[T]) -> T: ...

    async def write(self, work: Work[T]) -> T: ...

    async def close(self) -> None: ...


def _sqlite_engine(url: str, *, begin: str) -> sa.Engine:
    """An engine whose connections are tuned for WAL and open transactions with `begin`."""
    engine = sa.create_engine(
        url,
        poolclass=sa.pool.NullPool,
        connect_args={"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT_MS / 1000},
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # we issue BEGIN ourselves
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: sa.Connection) -> None:
        # Straight to the driver: through exec_driver_sql this cost as much as a query.
        conn.connection.driver_connection.execute(begin)  # type: ignore[union-attr]

    return engine


class SqliteThreads:
    """One writer thread and a few reader threads, each with its own connection.

    Every process writing through this class (the workers of a `serve`, the operator, the
    admin CLI) also takes an `flock` on `<database>.write-lock` around each write: the
    kernel hands the lock to the next waiter at once, where SQLite's own busy handler would
    sleep and poll. Anything else writing the file still waits on SQLite's lock as before.
    """

    def __init__(self, url: str, *, readers: int = SQLITE_READERS) -> None:
        path = sa.engine.make_url(url).database
        assert path, "a file database"
        self._write_lock = os.open(f"{path}.write-lock", os.O_RDWR | os.O_CREAT, 0o600)
        self._write_engine = _sqlite_engine(url, begin="BEGIN IMMEDIATE")
        self._read_engine = _sqlite_engine(url, begin="BEGIN")
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="store-writer")
        self._readers = ThreadPoolExecutor(readers, thread_name_prefix="store-reader")
        self._local = threading.local()
        self._opened: list[sa.Connection] = []
        self._opened_lock = threading.Lock()

    def _connection(self, engine: sa.Engine) -> sa.Connection:
        conn: sa.Connection | None = getattr(self._local, "conn", None)
        if conn is None or conn.closed:
            conn = engine.connect()
            self._local.conn = conn
            with self._opened_lock:
                self._opened.append(conn)
        return conn

    def _run(self, engine: sa.Engine, work: Work[T]) -> T:
        conn = self._connection(engine)
        try:
            with conn.begin():
                return work(conn)
        except sa.exc.DBAPIError as exc:
            if exc.connection_invalidated:
                self._local.conn = None
            raise

    @_measured("read")
    async def read(self, work: Work[T]) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._readers, self._run, self._read_engine, work)

    @_measured("write")
    async def write(self, work: Work[T]) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._writer, self._run_write, work)

    def _run_write(self, work: Work[T]) -> T:
        fcntl.flock(self._write_lock, fcntl.LOCK_EX)
        try:
            return self._run(self._write_engine, work)
        finally:
            fcntl.flock(self._write_lock, fcntl.LOCK_UN)

    async def close(self) -> None:
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, self._close_sync)

    def _close_sync(self) -> None:
        self._writer.shutdown(wait=True)
        self._readers.shutdown(wait=True)
        with self._opened_lock:
            for conn in self._opened:
                conn.close()
            self._opened.clear()
        self._write_engine.dispose()
        self._read_engine.dispose()
        os.close(self._write_lock)


class AsyncEngineUnits:
    """Units on an async engine (asyncpg): no threads, the driver's own async I/O.

    Every round trip counts here, so: a read runs in autocommit (no BEGIN/ROLLBACK; its few
    statements tolerate seeing commits in between), and pooled connections are not pinged
    before use. A connection found dead instead (the database restarted) is dropped and the
    unit run once more on a fresh one, which is safe because it failed before its commit.
    """

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self._autocommit = engine.execution_options(isolation_level="AUTOCOMMIT")

    @_measured("read")
    async def read(self, work: Work[T]) -> T:
        for attempt in (1, 2):
            try:
                async with self._autocommit.connect() as conn:
                    return await conn.run_sync(work)
            except sa.exc.DBAPIError as exc:
                if attempt == 2 or not exc.connection_invalidated:
                    raise
        raise AssertionError("unreachable")

    @_measured("write")
    async def write(self, work: Work[T]) -> T:
        for attempt in (1, 2):
            async with self.engine.connect() as conn:
                try:
                    transaction = await conn.begin()
                    result = await conn.run_sync(work)
                except sa.exc.DBAPIError as exc:
                    if attempt == 2 or not exc.connection_invalidated:
                        raise
                    continue
                await transaction.commit()  # a failure here is not retried: it may have landed
                return result
        raise AssertionError("unreachable")

    async def close(self) -> None:
        await self.engine.dispose()
