"""Backup and restore of the SQLite store: one consistent file out, one checked file back in.

Backup uses SQLite's online backup API (`sqlite3.Connection.backup`) in one step, so the
copy is a single read transaction's snapshot while servers keep writing. Restore refuses
while any process has the store open, migrates an older backup to this code's head, and
swaps the file in atomically (temp file in the same dir, fsync, rename). PostgreSQL has
its own tools (`pg_dump -Fc` / `pg_restore`, see docs/operations.md); we do not wrap them.
"""

from __future__ import annotations

import errno
import fcntl
import os
import sqlite3
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import sqlalchemy as sa

from acme_server.store.database import MIGRATIONS_DIR, head_revision
from acme_server.store.files import FILE_MODE, SQLITE_SUFFIXES, private_dir

# SQLite's "dead man switch" byte in the -shm file (unix VFS: 120 + 8 lock slots): every
# connection that has read a WAL database holds a shared lock on it until it closes.
_SHM_DMS_OFFSET = 128


class BackupError(RuntimeError):
    """A backup or restore that cannot be done; the message says what to do instead."""


def sqlite_path(url: str) -> Path:
    """The database file of a SQLite store URL; PostgreSQL is refused with what to use."""
    parsed = sa.engine.make_url(url)
    if parsed.get_backend_name() == "postgresql":
        raise BackupError(
            "the store is PostgreSQL: back it up with `pg_dump -Fc` and restore it with "
            "`pg_restore` (see docs/operations.md); `store backup|restore` are for SQLite"
        )
    if parsed.get_backend_name() != "sqlite" or not parsed.database:
        raise BackupError(f"store backup/restore handle SQLite files only, not {parsed.drivername}")
    return Path(parsed.database)


def _revision(conn: sqlite3.Connection) -> str | None:
    try:
        row = conn.execute("SELECT version_num FROM alembic_version").fetchone()
    except sqlite3.DatabaseError:
        return None
    return None if row is None else str(row[0])


def _integrity(conn: sqlite3.Connection, what: str) -> None:
    try:
        result = [r[0] for r in conn.execute("PRAGMA integrity_check").fetchall()]
    except sqlite3.DatabaseError as exc:
        raise BackupError(f"{what} is not a SQLite database: {exc}") from None
    if result != ["ok"]:
        raise BackupError(f"{what} fails PRAGMA integrity_check: {'; '.join(result[:5])}")


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _temp_beside(target: Path) -> Path:
    """A new empty 0600 file in `target`'s directory (so the final rename is atomic)."""
    fd, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.fchmod(fd, FILE_MODE)
    os.close(fd)
    return Path(name)


def _copy(src: sqlite3.Connection, dest_path: Path) -> None:
    """Copy `src` into `dest_path` in one backup step, as a self-contained rollback-journal file."""
    dest = sqlite3.connect(dest_path)
    try:
        src.backup(dest)  # pages=-1: one step, one read transaction, a consistent snapshot
        dest.execute("PRAGMA journal_mode=DELETE")  # one file, no -wal beside it
        dest.commit()
    finally:
        dest.close()


def _remove_temp(path: Path) -> None:
    for suffix in SQLITE_SUFFIXES:
        with suppress(FileNotFoundError):
            path.with_name(path.name + suffix).unlink()


def backup_sqlite(db_path: Path, out: Path) -> str:
    """Write a consistent copy of the store at `db_path` to `out` (mode 0600); its revision."""
    if not db_path.is_file():
        raise BackupError(f"no SQLite store at {db_path}")
    if out.exists() and out.is_dir():
        raise BackupError(f"{out} is a directory; name the backup file")
    out = out.absolute()
    if not out.parent.is_dir():
        raise BackupError(f"no directory {out.parent} to write the backup into")
    tmp = _temp_beside(out)
    try:
        src = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=30)
        try:
            _copy(src, tmp)
        finally:
            src.close()
        check = sqlite3.connect(tmp)
        try:
            _integrity(check, "the backup")
            revision = _revision(check)
        finally:
            check.close()
        if revision is None:
            raise BackupError(f"{db_path} is not an acme-gateway store (no schema revision)")
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, out)
        _fsync_dir(out.parent)
        return revision
    finally:
        _remove_temp(tmp)


def store_in_use(db_path: Path, *, write_lock: bool = True) -> str | None:
    """Why the store at `db_path` is open in another process right now, or None if it is not.

    Two signs: our `<db>.write-lock` flock is held (a write in progress), or another
    connection holds SQLite's shared lock on the -shm file (any open reader or writer)."""
    lock = db_path.with_name(db_path.name + ".write-lock")
    if write_lock and lock.exists():
        fd = os.open(lock, os.O_RDWR)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return f"a process is writing the store ({lock} is locked)"
        finally:
            os.close(fd)  # closing drops our flock too
    shm = db_path.with_name(db_path.name + "-shm")
    if shm.exists():
        fd = os.open(shm, os.O_RDWR)
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, _SHM_DMS_OFFSET)
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.EACCES):
                raise
            return f"a process has the store open ({shm} is locked)"
        finally:
            os.close(fd)
    return None


@contextmanager
def _write_locked(db_path: Path) -> Iterator[None]:
    """Hold `<db>.write-lock` so a server starting meanwhile waits before its first write."""
    fd = os.open(db_path.with_name(db_path.name + ".write-lock"), os.O_RDWR | os.O_CREAT, FILE_MODE)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        yield
    except BlockingIOError:
        raise BackupError("a process is writing the store: stop every server first") from None
    finally:
        os.close(fd)


def check_backup(path: Path) -> str:
    """The revision of the acme-gateway store in `path`; BackupError if it is not one we know."""
    if not path.is_file():
        raise BackupError(f"no backup file at {path}")
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        _integrity(conn, str(path))
        revision = _revision(conn)
    finally:
        conn.close()
    if revision is None:
        raise BackupError(f"{path} is not an acme-gateway store (no alembic_version)")
    from alembic.script import ScriptDirectory

    known = {rev.revision for rev in ScriptDirectory(str(MIGRATIONS_DIR)).walk_revisions()}
    if revision not in known:
        raise BackupError(
            f"{path} is at schema revision {revision}, unknown to this code (head "
            f"{head_revision()}): restore it with the acme-gateway version that made it"
        )
    return revision


def stage_restore(db_path: Path, backup: Path) -> Path:
    """Copy `backup` into a 0600 temp file beside `db_path`; the caller migrates and swaps it."""
    if reason := store_in_use(db_path):
        raise BackupError(
            f"refusing to restore while the store is in use: {reason}; stop every "
            "server and the operator first"
        )
    check_backup(backup)
    private_dir(db_path.parent)
    tmp = _temp_beside(db_path)
    try:
        src = sqlite3.connect(f"file:{backup}?mode=ro", uri=True)
        try:
            _copy(src, tmp)
        finally:
            src.close()
    except BaseException:
        _remove_temp(tmp)
        raise
    return tmp


def swap_in(db_path: Path, staged: Path) -> None:
    """Replace the store with `staged` atomically; stale -wal/-shm go first (they belong to
    the old file and SQLite would replay the WAL onto the new one)."""
    try:
        with _write_locked(db_path):
            if reason := store_in_use(db_path, write_lock=False):  # we hold that one
                raise BackupError(f"refusing to restore while the store is in use: {reason}")
            with open(staged, "rb") as fh:
                os.fsync(fh.fileno())
            for suffix in ("-wal", "-shm", "-journal"):
                with suppress(FileNotFoundError):
                    db_path.with_name(db_path.name + suffix).unlink()
            os.replace(staged, db_path)
            _fsync_dir(db_path.parent)
    finally:
        _remove_temp(staged)
        with suppress(FileNotFoundError):
            staged.with_name(staged.name + ".write-lock").unlink()
