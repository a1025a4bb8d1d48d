"""Files at rest (issue 8 item 18), server-wide caps and the startup warning, on a real server.

The store holds every HMAC key and the nonce key: data dir 0700, SQLite files 0600, whether
the server or the admin CLI creates them, and a wider existing data dir is tightened.
"""

from __future__ import annotations

import asyncio
import os
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from acme_server.store import registrations
from acme_server.store.database import Database, default_database_url
from tests.gateway_proc import GATEWAY, GatewayProcess, client_env
from tests.protocol.support import assert_problem, new_account, unique

SQLITE = "acme-gateway.sqlite3"


@pytest.fixture(autouse=True)
def permissive_umask() -> Iterator[None]:
    """The usual 022: without our fixes, files come out group/world-readable."""
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _assert_private_store(data_dir: Path, db_file: Path) -> None:
    assert _mode(data_dir) == 0o700, oct(_mode(data_dir))
    present = [p for p in (db_file, Path(f"{db_file}-wal"), Path(f"{db_file}-shm")) if p.exists()]
    assert db_file in present
    for path in present:
        assert _mode(path) == 0o600, f"{path}: {oct(_mode(path))}"


def test_cli_on_fresh_dir_creates_private_store(tmp_path: Path) -> None:
    data_dir = tmp_path / "fresh" / "data"
    result = subprocess.run(
        [
            GATEWAY,
            "registration",
            "create",
            "r1",
            "--domain",
            "a.test",
            "--data-dir",
            str(data_dir),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env=client_env(),
    )
    assert result.returncode == 0, result.stderr
    _assert_private_store(data_dir, data_dir / SQLITE)


async def _ungranted_registration(url: str, name: str) -> None:
    db = await Database.open(url)
    try:  # as a store from before migration 0002 would hold it: no domains, no grant
        await registrations.upsert(
            db, name, kid=f"kid-{name}", hmac_key="A" * 43, max_accounts=None, suspended=False
        )
    finally:
        await db.close()


def test_server_start_tightens_dir_caps_and_warns(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir(mode=0o755)
    os.chmod(data_dir, 0o755)
    db_file = data_dir / SQLITE
    asyncio.run(_ungranted_registration(default_database_url(data_dir), "legacy-open"))
    os.chmod(db_file, 0o644)  # as older versions left it
    gw = GatewayProcess(data_dir, extra_args=("--max-pending-orders", "1"))
    gw.start()
    try:
        acme = new_account(gw)  # writes: the -wal/-shm files exist now
        _assert_private_store(data_dir, db_file)
        log = gw.log_path.read_text()
        assert "tightened directory" in log and "tightened store file" in log
        assert "grant no names" in log and "'legacy-open'" in log
        # The server-wide cap applies to accounts without a registration (open mode).
        acme.order([unique()])
        resp = acme.new_order([unique()])
        assert_problem(resp, "rateLimited", 429, "the limit is 1")
        assert int(resp.headers["Retry-After"]) >= 1
    finally:
        gw.stop()


def test_server_creates_missing_store_dir_private(tmp_path: Path) -> None:
    store_dir = tmp_path / "elsewhere" / "db"
    gw = GatewayProcess(tmp_path / "data", database=f"sqlite:///{store_dir / 'store.sqlite3'}")
    gw.start()
    try:
        new_account(gw)
        _assert_private_store(store_dir, store_dir / "store.sqlite3")
        assert _mode(tmp_path / "data") == 0o700
    finally:
        gw.stop()
