"""One owner for migrations: only the server and `store migrate` upgrade; others check.

Real SQLite stores at a given revision; the operator is started as a real process.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.config import Config

from acme_server.store.database import (
    MIGRATIONS_DIR,
    Database,
    SchemaMismatch,
    head_revision,
)
from acme_server.store.operator_facade import OperatorStore

BIN = Path(sys.executable).parent


def _upgrade(conn: sa.Connection, revision: str) -> None:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.attributes["connection"] = conn
    command.upgrade(cfg, revision)


async def _store_at(url: str, revision: str | None) -> None:
    """A real store migrated to `revision` (None: empty; "future": stamped unknown)."""

    def unit(conn: sa.Connection) -> None:
        if revision == "future":
            _upgrade(conn, "head")
            conn.execute(sa.text("UPDATE alembic_version SET version_num = 'f00d'"))
        elif revision is not None:
            _upgrade(conn, revision)
        else:
            conn.execute(sa.text("CREATE TABLE unrelated (id INTEGER)"))

    db = await Database.open(url, migrate=False)
    try:
        await db.write(unit)
    finally:
        await db.close()


@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'store.sqlite3'}"


async def _revision(url: str) -> str | None:
    db = await Database.open(url, migrate=False)
    try:
        return await db.schema_revision()
    finally:
        await db.close()


@pytest.mark.parametrize(
    ("revision", "words"),
    [
        ("0001", "older than this code's"),
        ("future", "unknown to this code"),
        (None, "has no schema yet"),
    ],
)
async def test_operator_store_refuses_other_revisions(
    url: str, revision: str | None, words: str
) -> None:
    await _store_at(url, revision)
    before = await _revision(url)
    with pytest.raises(SchemaMismatch, match=words) as info:
        await OperatorStore.open(url)
    assert "\n" not in str(info.value)
    assert await _revision(url) == before, "the operator side must never migrate"


async def test_operator_store_opens_at_head(url: str) -> None:
    await _store_at(url, "head")
    store = await OperatorStore.open(url)
    try:
        await store.ping()
        assert await store.registration("nobody") is None
    finally:
        await store.close()


async def test_server_side_open_still_migrates(url: str) -> None:
    await _store_at(url, "0001")
    db = await Database.open(url)
    await db.close()
    assert await _revision(url) == head_revision()


def _run(*argv: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        list(argv), capture_output=True, text=True, timeout=120, check=False, env=env
    )


def test_store_migrate_and_check_commands(url: str) -> None:
    asyncio.run(_store_at(url, "0001"))
    gw = str(BIN / "acme-gateway")
    checked = _run(gw, "store", "check", "--database", url)
    assert checked.returncode == 1
    assert "older than this code's" in checked.stderr
    migrated = _run(gw, "store", "migrate", "--database", url)
    assert migrated.returncode == 0, migrated.stderr
    assert f"schema revision {head_revision()}" in migrated.stdout
    assert _run(gw, "store", "check", "--database", url).returncode == 0
    assert asyncio.run(_revision(url)) == head_revision()


def test_operator_exits_1_on_an_older_store(url: str, tmp_path: Path) -> None:
    """The real operator process: one clear line and exit status 1, before any Kubernetes work."""
    asyncio.run(_store_at(url, "0001"))
    proc = _run(
        str(BIN / "acme-gateway-operator"),
        "--database",
        url,
        "--health-listen",
        "127.0.0.1:1",
        env={"PATH": "/usr/bin:/bin", "KUBECONFIG": str(tmp_path / "no-such-kubeconfig")},
    )
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == (
        f"Error: the store's schema is at revision 0001, older than this code's "
        f"{head_revision()}: run `acme-gateway store migrate` (or upgrade the ACME server) first"
    )
    assert asyncio.run(_revision(url)) == "0001"


async def test_revision_check_on_postgresql(postgres_url: str) -> None:
    await _store_at(postgres_url, "0001")
    with pytest.raises(SchemaMismatch, match="older than this code's"):
        await OperatorStore.open(postgres_url)
    assert await _revision(postgres_url) == "0001"
    db = await Database.open(postgres_url)  # the server side migrates
    await db.close()
    store = await OperatorStore.open(postgres_url)
    try:
        await store.ping()
    finally:
        await store.close()
