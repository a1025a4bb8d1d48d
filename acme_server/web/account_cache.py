"""Accounts and their pre-registrations, read from the store at most once per time bound.

Every kid-signed request needs the account (its key and status) and its pre-registration
(suspended? deleted? which names?). Reading both on every request was a large share of a
request's cost; they change rarely.

How fresh an entry is:
* a change this server makes to an account (update, deactivation, key rollover) drops the
  entry at once in every worker process: the change bumps the shared region's account
  generation and each worker empties its cache when it sees a new one;
* a change made elsewhere (the operator or admin CLI suspending or deleting a
  pre-registration, another server replica changing an account) is seen within `ttl`
  (`--account-cache-ttl`, default 2 s; 0 turns the cache off).
Only found accounts are cached, so a new account is visible at once and unknown IDs cannot
fill the cache; the cache holds at most `max_entries`, oldest dropped first.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import sqlalchemy as sa

from acme_server.shared_region import SharedRegion
from acme_server.store import accounts as account_store
from acme_server.store import registrations as registration_store
from acme_server.store.accounts import Account
from acme_server.store.database import Database
from acme_server.store.registrations import Registration

MAX_ENTRIES = 50_000


@dataclass(frozen=True)
class AccountView:
    account: Account
    registration: Registration | None  # the bound pre-registration, if it still exists


def load_view(conn: sa.Connection, account_id: str) -> AccountView | None:
    account = account_store.by_id(conn, account_id)
    if account is None:
        return None
    registration = None
    if account.registration_id is not None:
        registration = registration_store.load_by_id(conn, account.registration_id)
    return AccountView(account, registration)


class AccountCache:
    def __init__(
        self,
        db: Database,
        ttl_seconds: float,
        region: SharedRegion | None,
        max_entries: int = MAX_ENTRIES,
    ) -> None:
        self._db = db
        self._ttl = ttl_seconds
        self._region = region
        self._max = max_entries
        self._entries: dict[str, tuple[float, AccountView]] = {}
        self._generation = region.account_generation if region else 0

    async def get(self, account_id: str) -> AccountView | None:
        now = time.monotonic()
        self._follow_generation()
        cached = self._entries.get(account_id)
        if cached is not None and cached[0] > now:
            return cached[1]
        view = await self._db.read(lambda conn: load_view(conn, account_id))
        if view is not None and self._ttl > 0:
            self._entries.pop(account_id, None)
            if len(self._entries) >= self._max:
                del self._entries[next(iter(self._entries))]
            self._entries[account_id] = (now + self._ttl, view)
        else:
            self._entries.pop(account_id, None)
        return view

    def changed(self, account_id: str) -> None:
        """This server changed the account: drop it here and in every other worker."""
        self._entries.pop(account_id, None)
        if self._region is not None:
            self._region.bump_account_generation()  # every worker (this one too) clears

    def _follow_generation(self) -> None:
        if self._region is None:
            return
        generation = self._region.account_generation
        if generation != self._generation:
            self._entries.clear()
            self._generation = generation

    def __len__(self) -> int:
        return len(self._entries)
