"""The spent-nonce table (`--nonce-scope store`) and nonce key on real SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from acme_server.store.database import Database
from acme_server.store.nonces import SpentNonces, load_or_create_key


async def _run(url: str) -> None:
    db = await Database.open(url)
    other = await Database.open(url)  # a second server process on the same store
    try:
        keys = await asyncio.gather(load_or_create_key(db), load_or_create_key(other))
        assert keys[0] == keys[1] and len(keys[0]) == 32
        assert await load_or_create_key(db) == keys[0]

        here, there = SpentNonces(db), SpentNonces(other)
        now = datetime.now(UTC)
        assert await here.spend(b"fresh", now + timedelta(minutes=5))
        assert not await there.spend(b"fresh", now + timedelta(minutes=5))
        assert not await here.spend(b"fresh", now + timedelta(minutes=5))
        # Two processes spending one nonce at once: exactly one wins.
        raced = await asyncio.gather(
            here.spend(b"raced", now + timedelta(minutes=5)),
            there.spend(b"raced", now + timedelta(minutes=5)),
        )
        assert sorted(raced) == [False, True]

        assert await here.spend(b"stale", now - timedelta(seconds=1))
        assert await here.purge_expired() == 1
        assert await here.purge_expired() == 0
        assert not await here.spend(b"fresh", now + timedelta(minutes=5))  # still spent
    finally:
        await other.close()
        await db.close()


def test_spent_nonces_sqlite(tmp_path: Path) -> None:
    asyncio.run(_run(f"sqlite:///{tmp_path / 'store.sqlite3'}"))


@pytest.mark.usefixtures("postgres_server")
def test_spent_nonces_postgres(postgres_url: str) -> None:
    asyncio.run(_run(postgres_url))
