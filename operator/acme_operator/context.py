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

import kopf

from acme_operator.batching import Coalescer
from acme_operator.config import OperatorConfig
from acme_operator.kube import KubeClient
from acme_server.store.operator_facade import (
    OperatorStore,
    Registration,
    RegistrationError,
    RowSpec,
)


class StoreRows:
    """Registration rows by name, key-ID holders and upserts, each coalesced across callers."""

    def __init__(self, store: OperatorStore) -> None:
        self._store = store
        self.get: Coalescer[str, Registration | None] = Coalescer(self._get)
        self.kid_holder: Coalescer[str, str | None] = Coalescer(self._kids)
        self.upsert: Coalescer[RowSpec, Registration] = Coalescer(self._upsert)

    async def _get(self, names: list[str]) -> list[Registration | None]:
        found = await self._store.registrations(names)
        return [found.get(n) for n in names]

    async def _kids(self, kids: list[str]) -> list[str | None]:
        found = await self._store.kid_holders(kids)
        return [found.get(k) for k in kids]

    async def _upsert(self, specs: list[RowSpec]) -> Sequence[Registration | RegistrationError]:
        return await self._store.upsert_registrations(specs)


@dataclass
class OperatorContext:
    store: OperatorStore
    config: OperatorConfig
    kube: KubeClient
    locks: defaultdict[str, asyncio.Lock] = field(default_factory=lambda: defaultdict(asyncio.Lock))
    rows: StoreRows = field(init=False)
    # Registrations whose store row changed: their AllowedDomains' status is re-judged soon.
    dirty: set[tuple[str, str]] = field(default_factory=set)
    dirty_event: asyncio.Event = field(default_factory=asyncio.Event)

    def __post_init__(self) -> None:
        self.rows = StoreRows(self.store)

    def registration_written(self, namespace: str, name: str) -> None:
        self.dirty.add((namespace, name))
        self.dirty_event.set()

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
