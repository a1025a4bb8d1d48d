"""A real server for the HTTP fuzz tests: the aiohttp app on a real SQLite store and socket.

The app runs on its own event loop in a background thread, exactly as `serve` builds it
(store, CA, nonces), so the fuzz tests talk plain HTTP to it from synchronous hypothesis
code. `snapshot()` reads every table through a separate SQLite connection, so it sees
what was committed, as another server process would.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests
from aiohttp import web

from acme_server.ca import CertificateAuthority
from acme_server.config import Settings
from acme_server.nonces import NonceService
from acme_server.store import registrations
from acme_server.store.database import Database, default_database_url
from acme_server.store.nonces import SpentNonces, load_or_create_key
from acme_server.store.registrations import Registration
from acme_server.web.account_cache import AccountCache
from acme_server.web.app import build_app
from acme_server.web.state import AppState
from acme_server.web.urls import Urls
from tests.procs import free_port

ERR = "urn:ietf:params:acme:error:"
PROBLEM_JSON = "application/problem+json"
JOSE_JSON = "application/jose+json"

# Spending a nonce is the one write every authenticated request makes, by design, before
# its signature is checked; Alembic's bookkeeping never changes here.
UNCOMPARED_TABLES = frozenset({"nonces", "alembic_version"})

Snapshot = dict[str, list[tuple[Any, ...]]]


@dataclass
class Target:
    base_url: str
    db_path: Path
    session: requests.Session

    def snapshot(self) -> Snapshot:
        conn = sqlite3.connect(f"file:{self.db_path}?mode=ro", uri=True)
        try:
            tables = [
                row[0]
                for row in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")
                if row[0] not in UNCOMPARED_TABLES and not row[0].startswith("sqlite_")
            ]
            return {
                t: sorted(conn.execute(f'SELECT * FROM "{t}"').fetchall(), key=repr) for t in tables
            }
        finally:
            conn.close()

    def nonce(self) -> str:
        return self.session.head(f"{self.base_url}/acme/new-nonce", timeout=10).headers[
            "Replay-Nonce"
        ]


def check_answer(resp: requests.Response, before: Snapshot, after: Snapshot) -> None:
    """Never a 5xx or a traceback; every error a problem document with an ACME type and
    its HTTP status; and no row changed in any table when the answer was an error."""
    context = f"{resp.request.method} {resp.request.url} -> {resp.status_code} {resp.text[:300]}"
    assert resp.status_code < 500, context
    assert "Traceback" not in resp.text and 'File "' not in resp.text, context
    if resp.status_code < 400:
        return
    assert resp.headers.get("Content-Type", "").split(";")[0] == PROBLEM_JSON, context
    changed = sorted(t for t in set(before) | set(after) if before.get(t) != after.get(t))
    assert not changed, f"tables {changed} changed although the answer was an error: {context}"
    if resp.request.method == "HEAD":
        return  # no body to read
    doc = resp.json()
    assert isinstance(doc.get("type"), str) and doc["type"].startswith(ERR), context
    assert doc.get("status") == resp.status_code, context


class ServerThread:
    """Start/stop the app on a loop in a daemon thread."""

    def __init__(self, data_dir: Path, *, account_creation: str = "open") -> None:
        self.data_dir = data_dir
        self.account_creation = account_creation
        self.registration: Registration | None = None
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._runner: web.AppRunner | None = None
        self._db: Database | None = None

    def start(self) -> Target:
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(60)
        return Target(self.base_url, self.data_dir / "acme-gateway.sqlite3", requests.Session())

    async def _start(self) -> None:
        settings = Settings(
            base_url=self.base_url,
            data_dir=self.data_dir,
            database_url=default_database_url(self.data_dir),
            listen_port=self.port,
            account_creation=self.account_creation,
        )
        self._db = db = await Database.open(settings.database_url)
        if self.account_creation == "pre-registered":
            self.registration = await registrations.create(
                db, "fuzz", max_accounts=3, domains=("example.com",)
            )
        ca = CertificateAuthority.load_or_create(self.data_dir)
        nonces = NonceService(SpentNonces(db), await load_or_create_key(db), 3600)
        state = AppState(
            settings=settings,
            db=db,
            ca=ca,
            nonces=nonces,
            urls=Urls(self.base_url),
            accounts=AccountCache(db, settings.account_cache_seconds, region=None),
        )
        self._runner = web.AppRunner(build_app(state))
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    def stop(self) -> None:
        async def _stop() -> None:
            if self._runner is not None:
                await self._runner.cleanup()
            if self._db is not None:
                await self._db.close()

        asyncio.run_coroutine_threadsafe(_stop(), self.loop).result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
