"""What every handler shares: the store, the settings, the Kubernetes client, per-registration locks.

Kopf hands it to handlers through `memo`; registrations are written under a per-name lock so
a domain change and a registration change never interleave a read-modify-write of one row.
Store reads and writes go through `rows`, which batches concurrent calls into one transaction.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

import aiohttp
import kopf

from acme_operator.batching import Coalescer
from acme_operator.config import OperatorConfig
from acme_operator.kube import KubeClient
from acme_server.store.operator_facade import (
    OperatorStore,
    Registration,
    RegistrationError,
    RegistrationUsage,
    RowSpec,
)


class StoreRows:
    """Registration rows by name, key-ID holders and upserts, each coalesced across callers."""

    def __init__(self, store: OperatorStore) -> None:
        self._store = store
        self.get: Coalescer[str, Registration | None] = Coalescer(self._get)
        self.kid_holder: Coalescer[str, str | None] = Coalescer(self._kids)
        self.upsert: Coalescer[RowSpec, Registration] = Coalescer(self._upsert)
        self.usage: Coalescer[str, RegistrationUsage] = Coalescer(self._usage)

    async def _get(self, names: list[str]) -> list[Registration | None]:
        found = await self._store.registrations(names)
        return [found.get(n) for n in names]

    async def _kids(self, kids: list[str]) -> list[str | None]:
        found = await self._store.kid_holders(kids)
        return [found.get(k) for k in kids]

    async def _usage(self, names: list[str]) -> list[RegistrationUsage]:
        found = await self._store.usage_many(names)
        return [found[n] for n in names]

    async def _upsert(self, specs: list[RowSpec]) -> Sequence[Registration | RegistrationError]:
        return await self._store.upsert_registrations(specs)


class Dirty:
    """(namespace, name) keys waiting for a sweep, and an event that wakes it."""

    def __init__(self) -> None:
        self.keys: set[tuple[str, str]] = set()
        self.event = asyncio.Event()

    def add(self, key: tuple[str, str]) -> None:
        self.keys.add(key)
        self.event.set()

    def take(self) -> set[tuple[str, str]]:
        keys, self.keys = self.keys, set()
        self.event.clear()
        return keys


@dataclass
class OperatorContext:
    store: OperatorStore
    config: OperatorConfig
    kube: KubeClient
    locks: defaultdict[str, asyncio.Lock] = field(default_factory=lambda: defaultdict(asyncio.Lock))
    rows: StoreRows = field(init=False)
    # Registrations whose store row changed: their AllowedDomains' status is re-judged soon.
    domains_dirty: Dirty = field(default_factory=lambda: Dirty())
    # Registrations whose grant an AllowedDomain changed: their own status is refreshed soon.
    registrations_dirty: Dirty = field(default_factory=lambda: Dirty())
    # Given to every API session (kopf's too): the leader fence when leader election is on.
    traces: list[aiohttp.TraceConfig] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.rows = StoreRows(self.store)

    def registration_written(self, namespace: str, name: str) -> None:
        self.domains_dirty.add((namespace, name))

    def lock(self, store_name: str) -> asyncio.Lock:
        return self.locks[store_name]


def from_memo(memo: kopf.Memo) -> OperatorContext:
    ctx = memo["ctx"] if "ctx" in memo else None
    if not isinstance(ctx, OperatorContext):
        raise RuntimeError("operator context missing from kopf memo")
    return ctx


def store_name(namespace: str, name: str) -> str:
    """The store's registration name for a custom resource (the CRD contract)."""
    return f"{namespace}/{name}"
