"""Files at rest: the data dir and the SQLite store hold every HMAC key and the nonce key.

The data dir is 0700 and the SQLite files (database, -wal, -shm) are 0600 whoever creates
them: the server, the admin CLI or the operator. SQLite gives its -wal and -shm files the
database file's mode, so creating the database file 0600 before SQLite opens it covers all
three; files left wider by older versions are tightened, with a log line.
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

log = logging.getLogger(__name__)

DIR_MODE = 0o700
FILE_MODE = 0o600
SQLITE_SUFFIXES = ("", "-wal", "-shm", "-journal")


def private_dir(path: Path) -> None:
    """Create `path` (and missing parents) with mode 0700, or tighten an existing one."""
    if not path.exists():
        path.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
        os.chmod(path, DIR_MODE)  # mkdir's mode is filtered by the umask; be exact
        return
    _tighten(path, DIR_MODE, "directory")


def private_sqlite_files(db_path: Path) -> None:
    """Make the SQLite database file exist with mode 0600 (and its companions 0600)."""
    if not db_path.parent.exists():
        private_dir(db_path.parent)
    try:
        # An empty file is a valid empty SQLite database; O_EXCL: never touch a racing one.
        os.close(os.open(db_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE))
    except FileExistsError:
        pass
    for suffix in SQLITE_SUFFIXES:
        path = db_path.with_name(db_path.name + suffix)
        if path.exists():
            _tighten(path, FILE_MODE, "store file")


def _tighten(path: Path, mode: int, what: str) -> None:
    current = stat.S_IMODE(path.stat().st_mode)
    if current & ~mode:
        try:
            os.chmod(path, current & mode)
        except PermissionError:  # not ours to change (e.g. another owner): say so, go on
            log.warning("%s %s is mode %04o and cannot be tightened", what, path, current)
            return
        log.warning(
            "tightened %s %s from %04o to %04o: it holds keys", what, path, current, current & mode
        )
